"""No cold misses: the engine (so the opensearch-py drop-in and the proxy) warms the model before it
takes traffic, and a freshly started proxy rewrites its very first query within the deadline."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qrw.plugin.config import load_config
from qrw.plugin.engine import RewriteEngine


class WarmableModel:
    """The real tiny ONNX model, counting warm-ups and serving calls per thread name."""

    def __init__(self, model) -> None:
        self.model = model
        self.name = model.name
        self.model_hash = ""  # keep this test off the persistent store
        self.warmed = False
        self.warmups = 0
        self.threads: list[str] = []

    def warmup(self) -> None:
        import threading

        self.warmups += 1
        self.threads.append(threading.current_thread().name)
        self.model.warmup()
        self.warmed = True

    def rewrite_and_tag(self, queries, num_rewrites):
        import threading

        self.threads.append(threading.current_thread().name)
        return self.model.rewrite_and_tag(queries, num_rewrites)

    def generate(self, queries, num_rewrites):
        return self.model.generate(queries, num_rewrites)

    def tag(self, pairs):
        return self.model.tag(pairs)


def test_engine_and_client_warm_the_model_before_traffic(tiny_export, faulty_model_cls):
    from qrw.plugin import RewritingOpenSearch
    from qrw.plugin.runtime import load_model

    model = WarmableModel(load_model(tiny_export, warmup=False))
    config = load_config(None, chain={"model_workers": 2})
    client = RewritingOpenSearch(hosts=["http://127.0.0.1:1"], config=config, model=model)  # no request is sent
    assert model.warmups == 1 and client.qrw.warm_ms is not None
    assert len(model.threads) == 2  # the runtime's warm-up, then one probe through the serving call
    assert len(client.qrw.cache) == 0  # the probe query is not cached
    assert client.qrw.warm_up() == client.qrw.warm_ms and model.warmups == 1  # idempotent
    client.close()
    faulty = faulty_model_cls()
    RewriteEngine(config, faulty).close()
    assert faulty.calls == 0  # only models that know how to warm up are run at start
    cold = RewriteEngine(load_config(None, chain={"warm_up": False}), WarmableModel(load_model(tiny_export, warmup=False)))
    assert cold.warm_ms is None and cold.source.model.warmups == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.opensearch
def test_a_fresh_proxy_rewrites_its_first_query_within_the_deadline(opensearch_url, indexed_catalog, tiny_export, tmp_path: Path):
    """The proxy process loads and warms the model before it listens; the first search it sees is
    then answered by the model itself (not the fallback) inside the default 150 ms deadline."""
    config = tmp_path / "plugin.yaml"
    # nothing cached from earlier runs (the model must answer); explain allowed from loopback
    config.write_text("cache:\n  store: memory\nproxy:\n  debug_networks: [127.0.0.1/32]\n")
    port = _free_port()
    log = tmp_path / "proxy.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            # the plugin's own command (what `qrw proxy` hands over to)
            [sys.executable, "-c", "import sys; from qrw.plugin.proxy_cli import proxy; sys.exit(proxy())",
             "--upstream", opensearch_url, "--model", str(tiny_export), "--port", str(port), "--config", str(config), "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"proxy did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.05)
        started_log = log.read_text()
        assert "warmed in" in started_log  # warmed before the port opened
        body = {"query": {"match": {"title": "wireless mouse"}}, "size": 3}
        response = httpx.post(f"http://127.0.0.1:{port}/{indexed_catalog}/_search", json=body, headers={"X-QRW-Explain": "true"}, timeout=30)
        assert response.status_code == 200, response.text
        report = response.json()["qrw"]
        assert report["model"]["origin"] == "model", report["model"]
        assert report["model"]["error"] is None
        assert report["timings_ms"]["model"] < load_config(None).chain.deadline_ms
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_chain_decoding_selects_the_runtime_strategy(tiny_export):
    from qrw.plugin.runtime import load_model

    model = load_model(tiny_export, warmup=False)
    assert model.generation.strategy == "greedy"
    RewriteEngine(load_config(None, chain={"decoding": "beam", "warm_up": False}, cache={"store": "memory"}), model).close()
    assert model.generation.strategy == "beam"
    beams = model.rewrite_and_tag(["laptop"], 3)[0]
    assert beams == [(r, p) for r, p in zip([r for r, _ in beams], model.tag([("laptop", r) for r, _ in beams]))]
