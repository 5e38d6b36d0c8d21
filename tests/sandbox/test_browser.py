"""The comparison page in a real headless Chromium (Debian's package) against the real stack:
OpenSearch with the catalog, the rewriting proxy with an exported model, and the page server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qrw.search import node as os_node

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os_node.cluster_health(url) is not None:
            return
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="module")
def proxy_url(opensearch_url, indexed_catalog, tiny_export, tmp_path_factory):
    port = os_node.free_port()
    # the random tiny model's one greedy list is punctuation the guards drop; its beams give rows to render
    config = tmp_path_factory.mktemp("proxy") / "plugin.yaml"
    config.write_text("chain:\n  decoding: beam\ncache:\n  store: memory\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "qrw.cli", "proxy", "--upstream", opensearch_url, "--model", str(tiny_export),
         "--port", str(port), "--config", str(config)],
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def page_url(opensearch_url, proxy_url, judgments_path):
    import uvicorn

    from qrw.sandbox.page import PageSettings, build_app, load_page_judgments

    settings = PageSettings(opensearch_url, proxy_url, "products", load_page_judgments(judgments_path))
    port = os_node.free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_page_renders_both_columns_with_tags(page_url, tmp_path):
    assert Path(CHROMIUM).exists(), "the browser test needs Debian's chromium (make test installs it)"
    from playwright.sync_api import sync_playwright

    screenshot = Path(os.environ.get("QRW_SCREENSHOT", tmp_path / "sandbox.png"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             env={**os.environ, "HOME": str(tmp_path)})
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(page_url)
        page.fill("input[name=q]", "laptop")
        page.click("button[type=submit]")
        page.wait_for_selector("#rewritten")
        original_hits = page.locator("#original li").count()
        rewritten_hits = page.locator("#rewritten li").count()
        assert original_hits == 10 and rewritten_hits == 10
        # judged query: grades are shown on hits
        assert page.locator("#original .grade").count() > 0
        # each rewrite row shows a tag from the vocabulary, and hits show provenance
        tags = page.locator("#rewritten table.rw td:nth-child(2)").all_inner_texts()
        assert tags and all(tag in {"exact", "substitute", "weak", "irrelevant"} for tag in tags), tags
        assert "found by:" in page.locator("#rewritten").inner_text()
        assert "rewrite" in page.locator("#rewritten .meta").first.inner_text()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 10_000
