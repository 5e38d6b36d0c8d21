"""``qrw sandbox`` on non-default ports: it stops what it started, and never adopts or stops anything else.

Runs on the small shop catalog (examples/shop) with a rewrite table, so a run takes seconds; the
Icecat catalog and the default rewriter take the same code path.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from qrw.search import node as os_node

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
pytestmark = pytest.mark.opensearch


class Sandbox:
    """``qrw sandbox`` in a child process; its output collected line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "qrw.cli", "sandbox", *args], cwd=cwd,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.output:
            assert self.process.poll() is None, f"the sandbox exited:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} within {seconds}s:\n{self.output}"
            time.sleep(0.2)

    def interrupt(self) -> int:
        # the sandbox's own worst case: the proxy gets 15 s after SIGTERM, the node 60 s (then SIGKILL);
        # a clean-clone CI run under load once needed more than the 60 s this used to allow
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=120)
        self.reader.join(timeout=10)
        return code


def get_page(url: str, seconds: float = 60) -> str:
    """The page's HTML, waiting for the server to listen (it starts just after the 'ready' line)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def free_ports(n: int) -> list[int]:
    ports = set()
    while len(ports) < n:
        ports.add(os_node.free_port())
    return sorted(ports)


@pytest.fixture()
def table(tmp_path) -> Path:
    path = tmp_path / "table.jsonl"
    path.write_text(json.dumps({"query": "couch", "rewrites": [{"text": "sofa", "tag": "exact"}]}) + "\n")
    return path


def shop_args(table: Path) -> list[str]:
    return ["--profile", str(SHOP / "profile.yaml"), "--from", str(SHOP / "catalog.jsonl"),
            "--judgments", str(SHOP / "judgments.csv"), "--model", str(table)]


def test_a_port_held_by_another_node_is_refused_and_that_node_left_alone(opensearch_node, tmp_path, table):
    proxy_port, page_port = free_ports(2)
    run = Sandbox("--port", str(opensearch_node.port), "--proxy-port", str(proxy_port), "--page-port", str(page_port),
                  *shop_args(table), cwd=tmp_path)
    assert run.process.wait(timeout=120) == 2
    run.reader.join(timeout=10)
    assert "taken by something the sandbox did not start" in run.output and "--url" in run.output
    assert os_node.cluster_health(opensearch_node.http_url)["status"] in ("green", "yellow")


def test_a_taken_proxy_port_fails_before_anything_starts(tmp_path, table):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port, page_port = busy.getsockname()[1], free_ports(1)[0]
        result = subprocess.run([sys.executable, "-m", "qrw.cli", "sandbox", "--port", str(free_ports(1)[0]),
                                 "--proxy-port", str(port), "--page-port", str(page_port), *shop_args(table)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"the proxy port {port} on 127.0.0.1 is taken" in result.stderr
    assert "[1/6]" not in result.stdout


def test_node_identity_is_the_cluster_name(opensearch_node):
    assert os_node.running_here(opensearch_node)
    impostor = os_node.NodeConfig(name=f"sandbox-{opensearch_node.port}", port=opensearch_node.port)
    assert not os_node.running_here(impostor)


def test_with_url_the_sandbox_serves_and_never_stops_that_node(opensearch_node, tmp_path, table):
    proxy_port, page_port = free_ports(2)
    run = Sandbox("--url", opensearch_node.http_url, "--proxy-port", str(proxy_port), "--page-port", str(page_port),
                  *shop_args(table), cwd=tmp_path)
    try:
        run.wait_for("[6/6] ready")
        assert "not started here, so not stopped either" in run.output
        assert "mean of 36 queries" in run.output  # the baseline evaluation on the shop's judgments
        page = get_page(f"http://127.0.0.1:{page_port}/?q=couch")
        assert "profile shop" in page and "sofa" in page and "gate: P(exact)=1.000" in page
        misspelled = get_page(f"http://127.0.0.1:{page_port}/?q=sofaa")  # a slip the index's suggester fixes
        assert "sofaa → sofa (a word the index does not hold, corrected by its term suggester); served as “sofa”" in misspelled and "sent again with fuzzy" not in misspelled
        assert "the rewriter read the corrected text" in misspelled
        far = get_page(f"http://127.0.0.1:{page_port}/?q=sefa")  # o and e are far apart: no respelling, nothing matches
        assert "sent again with fuzzy text clauses (AUTO)" in far and "sofa" in far.lower() and "index does not hold" not in far
    finally:
        code = run.interrupt()
    assert code == 0 and "stopped." in run.output
    assert os_node.cluster_health(opensearch_node.http_url)["status"] in ("green", "yellow")
    assert not os_node.port_in_use(proxy_port) and not os_node.port_in_use(page_port)
    assert (tmp_path / "runs" / "sandbox" / "proxy-plugin.yaml").is_file()  # outputs under runs/


def test_the_sandbox_stops_the_node_it_started(tmp_path, table):
    port, proxy_port, page_port = free_ports(3)
    cfg = os_node.NodeConfig(name=f"sandbox-{port}", port=port)
    run = Sandbox("--port", str(port), "--proxy-port", str(proxy_port), "--page-port", str(page_port),
                  *shop_args(table), cwd=tmp_path)
    try:
        run.wait_for("[6/6] ready")
        assert f"starting OpenSearch {cfg.version} on 127.0.0.1:{port}" in run.output
        assert os_node.running_here(cfg)
        code = run.interrupt()
        assert code == 0 and "stopped." in run.output
        assert not os_node.running_here(cfg) and os_node.cluster_health(cfg.http_url) is None
    finally:
        if run.process.poll() is None:
            run.interrupt()
        os_node.destroy(cfg)
