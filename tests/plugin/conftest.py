"""Plugin test helpers: a rewrite table and rules file on disk (the real TableRewriteModel and RuleSet),
and one fault-injecting model (timeouts, exceptions: faults a real model cannot be made to produce)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

TABLE = [
    {"query": "laptop", "rewrites": [
        {"text": "notebook", "tag": "exact"},
        {"text": "notebook computer", "probabilities": {"exact": 0.3, "substitute": 0.5, "weak": 0.2}},
        {"text": "laptop bag", "tag": "weak"},
        {"text": "Laptop", "tag": "exact"},
    ]},
    {"query": "hp toner", "rewrites": [
        {"text": "hp laserjet toner cartridge", "tag": "exact"},
        {"text": "canon toner", "tag": "exact"},
        {"text": "cheap hp toner", "tag": "exact"},
    ]},
    {"query": "usb stick", "rewrites": [{"text": "usb flash drive", "tag": "exact"}]},
]

RULES = """\
usb stick =>
    PIN: pendrive ^0.5
* =>
    BLOCK: /\\bcheap\\b/
"""


@pytest.fixture()
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "rewrites.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in TABLE) + "\n")
    return path


@pytest.fixture()
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.txt"
    path.write_text(RULES)
    return path


class FaultyModel:
    """Fault injection only: answers like a table but can be made slow or broken, and counts calls."""

    name = "faulty"

    def __init__(self, delay_s: float = 0.0, fail: bool = False, rewrites: dict | None = None) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.rewrites = rewrites or {"laptop": ["notebook"], "tablet": ["ipad"]}
        self.calls = 0
        self.lock = threading.Lock()

    def generate(self, queries, num_rewrites):
        with self.lock:
            self.calls += 1
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("injected model failure")
        return [list(self.rewrites.get(q, []))[:num_rewrites] for q in queries]

    def tag(self, pairs):
        return [{"exact": 1.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0} for _ in pairs]


@pytest.fixture()
def faulty_model_cls():
    return FaultyModel


class ServerThread:
    """Serve an ASGI app with uvicorn on a free loopback port in a background thread."""

    def __init__(self, app, port: int | None = None) -> None:
        import socket

        import uvicorn

        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="session")
def serve():
    return ServerThread
