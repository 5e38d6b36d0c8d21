"""The upstream pool's slots (``upstream.Node``): at most ``max_connections`` exchanges at once per node,
waiters served first come first served, a clear 503 (``ProxyOverloaded``) after ``pool_timeout_s``, and
a slot handed to a waiter that is cancelled passed on rather than lost."""

import asyncio

import pytest

from qrw.plugin.errors import ProxyOverloaded
from qrw.plugin.upstream import Upstreams, UpstreamSettings


def _search(upstreams: Upstreams):
    return upstreams.request("POST", b"/i/_search", [(b"content-type", b"application/json")], b"{}", retryable=True,
                             buffer_response=True)


def test_slots_queue_reuse_one_connection_and_time_out(raw_upstream):
    raw_upstream.delay_s = 0.2

    async def run():
        upstreams = Upstreams([raw_upstream.url], UpstreamSettings(max_connections=1, pool_timeout_s=2.0, health_interval_s=60))
        await upstreams.start()
        node = upstreams.nodes[0]
        try:
            answers = await asyncio.gather(*(_search(upstreams) for _ in range(3)))  # one at a time, in turn
            assert [(response.status, body) for response, body in answers] == [(200, b'{"ok":true}')] * 3
            assert node.free == 1 and not node.waiting

            quick = Upstreams([raw_upstream.url], UpstreamSettings(max_connections=1, pool_timeout_s=0.05, health_interval_s=60))
            await quick.start()
            first = asyncio.create_task(_search(quick))
            await asyncio.sleep(0.02)
            with pytest.raises(ProxyOverloaded):
                await _search(quick)
            assert (await first)[0].status == 200
            assert quick.nodes[0].free == 1 and not quick.nodes[0].waiting  # the timed-out waiter left no trace
            await quick.close()

            holder = asyncio.create_task(_search(upstreams))
            await asyncio.sleep(0.02)
            cancelled = asyncio.create_task(_search(upstreams))
            waiting = asyncio.create_task(_search(upstreams))
            await asyncio.sleep(0.02)
            cancelled.cancel()
            assert (await holder)[0].status == 200 and (await waiting)[0].status == 200  # the slot went on to `waiting`
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert node.free == 1 and not node.waiting
        finally:
            await upstreams.close()
        searches = [r for r in raw_upstream.requests if r["url"] == b"/i/_search"]
        assert len(searches) == 6  # the one refused for lack of a slot never left
        assert len({r["peer"] for r in searches}) <= 2  # kept alive: reused, not one connection per request

    asyncio.run(run())
