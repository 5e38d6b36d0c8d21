"""The comparison page in a real headless Chromium (Debian's package) against the real stack:
OpenSearch with the catalog, the rewriting proxy (``qrw proxy``, with a rules file) and the page server.

The proxy serves a rewrite table (``qrw.plugin.table``): known rewrites and tag probabilities, so
the test can check that the page explains every kind of decision (gate: full, down, drop; guard;
rule: pin and block) and shows the hits a rewrite brought in. The model runtime has its own tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qrw.search import node as os_node

CHROMIUM = os.environ.get("QRW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

TABLE = {"query": "beamer", "rewrites": [
    {"text": "projector", "probabilities": {"exact": 0.9, "substitute": 0.05, "weak": 0.03, "irrelevant": 0.02}},
    {"text": "video projector", "probabilities": {"exact": 0.3, "substitute": 0.5, "weak": 0.1, "irrelevant": 0.1}},
    {"text": "projector bag", "probabilities": {"exact": 0.05, "substitute": 0.1, "weak": 0.6, "irrelevant": 0.25}},
    {"text": "Beamer", "tag": "exact"},
    {"text": "ceiling pole", "tag": "exact"},
    {"text": "beamer remote", "tag": "exact"},
]}
RULES = "beamer =>\n    PIN: data projector ^0.5\n    BLOCK: ceiling pole\n"


def _wait_http(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os_node.cluster_health(url) is not None:
            return
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="module")
def proxy_url(opensearch_url, indexed_catalog, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    (folder / "table.jsonl").write_text(json.dumps(TABLE) + "\n")
    (folder / "rules.txt").write_text(RULES)
    # the page asks for explain reports, a debug surface the proxy opens to listed networks only
    (folder / "plugin.yaml").write_text("chain:\n  num_rewrites: 8\n  deadline_ms: 5000\nproxy:\n  debug_networks: [127.0.0.1/32]\n")
    port = os_node.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "qrw.cli", "proxy", "--upstream", opensearch_url, "--model", str(folder / "table.jsonl"),
         "--rules", str(folder / "rules.txt"), "--config", str(folder / "plugin.yaml"), "--port", str(port)],
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


def test_page_explains_every_rewrite_decision(page_url, tmp_path):
    assert Path(CHROMIUM).exists(), "the browser test needs Chromium (Debian: apt-get install chromium; or set QRW_CHROMIUM)"
    from playwright.sync_api import sync_playwright

    screenshot = Path(os.environ.get("QRW_SCREENSHOT", tmp_path / "sandbox.png"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             env={**os.environ, "HOME": str(tmp_path)})
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(page_url)
        legend = page.locator("#legend").inner_text()
        for term in ("exact", "substitute", "weak", "irrelevant", "gate", "guard", "rule", "brought in", "found by"):
            assert term in legend, term
        # a judged query: ten hits on each side, judged grades on the hits
        page.fill("input[name=q]", "laptop")
        page.click("button[type=submit]")
        page.wait_for_selector("#rewritten")
        assert page.locator("#original li").count() == 10 and page.locator("#rewritten li").count() == 10
        assert page.locator("#original .grade").count() > 0

        # "beamer" finds 3 products; the table's rewrites cover every kind of decision
        page.fill("input[name=q]", "beamer")
        page.click("button[type=submit]")
        page.wait_for_selector("#rewritten table.rw")
        rows = {}
        for row in page.locator("#rewritten table.rw tr").all()[1:]:
            cells = row.locator("td").all_inner_texts()
            rows[cells[0]] = cells
        # columns: rewrite, tag, P(exa), P(sub), P(wea), P(irr), action, weight, why, brought in, from
        assert rows["projector"][2:6] == ["0.90", "0.05", "0.03", "0.02"]
        assert rows["projector"][6] == "full" and rows["projector"][8].startswith("gate: P(exact)=0.900 >= full_min")
        assert rows["video projector"][6] == "down" and "keep_min" in rows["video projector"][8]
        assert rows["projector bag"][6] == "drop" and rows["projector bag"][8].startswith("gate:")
        assert rows["Beamer"][6] == "drop" and rows["Beamer"][8] == "guard: copies the query"
        assert rows["beamer remote"][6] == "drop" and rows["beamer remote"][8] == "guard: names another product after the query ('remote')"
        assert rows["ceiling pole"][6] == "drop" and rows["ceiling pole"][8].startswith("rule: blocked by")
        assert rows["data projector"][8].startswith("rule ") and rows["data projector"][10] == "rule"
        # the full-weight rewrite brought hits into the top 10 that the original query did not find
        assert page.locator("#original li").count() == 3
        assert rows["projector"][9].startswith("#"), rows["projector"]
        brought = [int(rank.strip().lstrip("#")) for rank in rows["projector"][9].split(",")]
        hits = page.locator("#rewritten li").all_inner_texts()
        for rank in brought:
            found_by = hits[rank - 1].split("found by:")[1].split(", ")
            assert "rewrite 1" in [label.strip() for label in found_by] and "original query" not in hits[rank - 1]
        assert page.locator("#rewritten .new").count() == 10 - 3
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert screenshot.stat().st_size > 10_000
