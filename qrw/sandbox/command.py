"""The sandbox orchestration: each step is a function; the command runs them in order."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click

from qrw.errors import NodeError
from qrw.search import node as os_node
from qrw.search.connect import DEFAULT_INDEX


def start_search(port: int) -> tuple[os_node.NodeConfig, str]:
    """The sandbox's own node (folder ``sandbox``). A node it did not start is never reused or stopped:
    if one already runs there, or anything holds the port, this fails with a hint instead."""
    cfg = os_node.NodeConfig(name="sandbox", port=port)
    click.echo(f"[1/6] starting OpenSearch {cfg.version} on 127.0.0.1:{port} …")
    return cfg, os_node.start(cfg, reuse=False)


def index_catalog_step(url: str, data_dir: Path | None) -> None:
    from qrw.search.catalog import load_catalog
    from qrw.search.connect import open_client
    from qrw.search.index import index_catalog

    click.echo("[2/6] indexing the Icecat catalog …")
    result = index_catalog(open_client(url), load_catalog(data_dir), DEFAULT_INDEX, url=url)
    click.echo(f"      {result['action']}: {result['alias']} -> {result['index']} ({result['documents']} documents)")


def baseline_step(url: str, data_dir: Path | None) -> dict:
    from qrw.eval.harness import evaluate_run, format_table
    from qrw.eval.judgments import load_judgments
    from qrw.eval.runs import produce_run
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import default_data_dir
    from qrw.search.connect import open_client

    judgments = (data_dir or default_data_dir()) / "judgments" / "judgments.csv"
    click.echo(f"[3/6] baseline evaluation on {judgments} …")
    qrels = load_judgments(judgments)
    report = evaluate_run(produce_run(open_client(url), DEFAULT_INDEX, list(qrels), DEFAULT_BASELINE, url=url), qrels)
    click.echo(format_table(report, per_query=False))
    return report


def rewriter_step() -> Path | None:
    from qrw.errors import QrwError
    from qrw.sandbox.rewriter import ensure_default_rewriter

    click.echo("[4/6] obtaining the default rewriter …")
    try:
        folder = ensure_default_rewriter()
    except QrwError as exc:
        click.echo(f"      WARNING: {exc}\n      the proxy will serve original queries only.", err=True)
        return None
    click.echo(f"      {folder}")
    return folder


# The sandbox is for looking at rewrites: a fp32 SmolLM2 on 2 cores needs 0.5-2 s for a cold query,
# so the serving default (150 ms, then the fallback ladder) would mostly show the original query.
# The page asks for explain reports, a debug surface: allowed from this machine only.
SANDBOX_PLUGIN_CONFIG = "chain:\n  deadline_ms: 5000\nproxy:\n  debug_networks: [127.0.0.1/32, ::1/128]\n"


def start_proxy(upstream: str, model: Path | None, port: int, work_dir: Path) -> subprocess.Popen:
    """The proxy in its own process (its own event loop and model threads), waited for until it answers."""
    config = work_dir / "sandbox-plugin.yaml"
    config.write_text(SANDBOX_PLUGIN_CONFIG)
    command = [sys.executable, "-m", "qrw.cli", "proxy", "--upstream", upstream, "--port", str(port),
               "--log-level", "info", "--config", str(config)]
    if model is not None:
        command += ["--model", str(model)]
    click.echo(f"[5/6] starting the rewriting proxy on 127.0.0.1:{port} …")
    process = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NodeError(f"the proxy exited with code {process.returncode} during start-up")
        if os_node.cluster_health(f"http://127.0.0.1:{port}") is not None:
            return process
        time.sleep(0.5)
    process.terminate()
    raise NodeError("the proxy did not answer within 180 s")


def stop_process(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@click.command("sandbox")
@click.option("--port", type=int, default=9200, show_default=True, help="OpenSearch HTTP port")
@click.option("--proxy-port", type=int, default=9201, show_default=True)
@click.option("--page-port", type=int, default=8080, show_default=True)
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None, help="Icecat data folder")
@click.option("--keep-opensearch", is_flag=True, help="leave OpenSearch running after Ctrl-C")
def sandbox(port: int, proxy_port: int, page_port: int, data_dir: Path | None, keep_opensearch: bool) -> None:
    """Real OpenSearch + catalog + baseline evaluation + default rewriter + proxy + comparison page.

    Runs until Ctrl-C, then stops everything it started.
    """
    from qrw.sandbox.page import PageSettings, load_page_judgments, serve_page
    from qrw.search.catalog import default_data_dir

    node_cfg, url = start_search(port)
    proxy = None
    try:
        index_catalog_step(url, data_dir)
        baseline_step(url, data_dir)
        model = rewriter_step()
        proxy = start_proxy(url, model, proxy_port, node_cfg.node_dir)
        judgments = (data_dir or default_data_dir()) / "judgments" / "judgments.csv"
        settings = PageSettings(url, f"http://127.0.0.1:{proxy_port}", DEFAULT_INDEX, load_page_judgments(judgments))
        click.echo(
            "[6/6] ready:\n"
            f"      comparison page  http://127.0.0.1:{page_port}/\n"
            f"      rewriting proxy  http://127.0.0.1:{proxy_port}/  (OpenSearch REST API; header X-QRW-Explain: true)\n"
            f"      OpenSearch       {url}/\n"
            "      Ctrl-C stops everything."
        )
        serve_page(settings, "127.0.0.1", page_port)
    finally:
        click.echo("stopping …")
        stop_process(proxy)
        if not keep_opensearch:
            os_node.stop(node_cfg)
        click.echo("stopped.")


@click.command("page")
@click.option("--opensearch", "opensearch_url", default="http://127.0.0.1:9200", show_default=True)
@click.option("--proxy", "proxy_url", default="http://127.0.0.1:9201", show_default=True)
@click.option("--index", default=DEFAULT_INDEX, show_default=True)
@click.option("--judgments", type=click.Path(path_type=Path), default=None, help="show judged grades for these queries")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
def page(opensearch_url: str, proxy_url: str, index: str, judgments: Path | None, host: str, port: int) -> None:
    """Serve the comparison page (plain search vs. rewritten search)."""
    from qrw.sandbox.page import PageSettings, load_page_judgments, serve_page

    settings = PageSettings(opensearch_url.rstrip("/"), proxy_url.rstrip("/"), index, load_page_judgments(judgments))
    click.echo(f"comparison page on http://{host}:{port}/")
    serve_page(settings, host, port)
