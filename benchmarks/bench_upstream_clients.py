"""Why the proxy has its own upstream client: httpx vs aiohttp vs ``qrw.plugin.upstream``, same exchange.

Method: one process, uvloop, a minimal HTTP/1.1 server on loopback in the same event loop answering a
300-byte JSON body; each client sends ``--requests`` sequential POSTs of a small search body on one
keep-alive connection, configured as a proxy would use it (no added headers, no decoding); clients
interleaved over ``--rounds`` rounds. Reported: median requests/s and CPU µs per exchange (client and
the toy server together; the server's share is the same for all three).

Usage: ``.venv/bin/python benchmarks/bench_upstream_clients.py [--requests 3000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: 300\r\n\r\n" + b"x" * 300
BODY = b'{"query":{"match":{"title":"laptop"}},"size":10}'


class Server(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(RESPONSE)


async def run_qrw(url: str, n: int) -> None:
    from qrw.plugin.upstream import Upstreams, UpstreamSettings

    upstreams = Upstreams([url], UpstreamSettings())
    headers = [(b"content-type", b"application/json")]
    for _ in range(n):
        await upstreams.request("POST", b"/products/_search", headers, BODY, retryable=True, buffer_response=True)
    await upstreams.close()


async def run_aiohttp(url: str, n: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept")) as session:
        for _ in range(n):
            async with session.post(f"{url}/products/_search", data=BODY, headers={"content-type": "application/json"}) as response:
                await response.read()


async def run_httpx(url: str, n: int) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(n):
            response = await client.post("/products/_search", content=BODY, headers={"content-type": "application/json"})
            await response.aread()


CLIENTS = {"qrw.plugin.upstream": run_qrw, "aiohttp": run_aiohttp, "httpx": run_httpx}


async def measure(name: str, n: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    await CLIENTS[name](url, 50)  # warm
    wall, cpu = time.perf_counter(), time.process_time()
    await CLIENTS[name](url, n)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    server.close()
    return n / wall, cpu / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not (100 <= args.requests <= 100_000 and 1 <= args.rounds <= 20):
        parser.error("bounded: 100..100,000 requests, 1..20 rounds")
    import importlib.metadata as md

    import uvloop

    uvloop.install()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
    for _ in range(args.rounds):
        for name in CLIENTS:
            results[name].append(asyncio.run(measure(name, args.requests)))
    report = {
        "versions": {pkg: md.version(pkg) for pkg in ("httpx", "aiohttp", "httptools", "uvloop")},
        "method": f"{args.rounds} rounds x {args.requests} sequential keep-alive POSTs per client, interleaved; toy server in-process",
        "clients": {name: {"median_rps": round(statistics.median(r for r, _ in rows)), "median_cpu_us_per_request": round(statistics.median(c for _, c in rows))}
                    for name, rows in results.items()},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
