"""The sandbox orchestration: each step is a function; the command runs them in order."""

from __future__ import annotations

from pathlib import Path

import click

from qrw.search import node as os_node
from qrw.search.connect import DEFAULT_INDEX


def start_search(port: int) -> tuple[os_node.NodeConfig, str]:
    cfg = os_node.NodeConfig(name="default", port=port)
    click.echo(f"[1/3] starting OpenSearch {cfg.version} on 127.0.0.1:{port} …")
    return cfg, os_node.start(cfg)


def index_catalog_step(url: str, data_dir: Path | None) -> None:
    from qrw.search.catalog import load_catalog
    from qrw.search.connect import open_client
    from qrw.search.index import index_catalog

    click.echo("[2/3] indexing the Icecat catalog …")
    result = index_catalog(open_client(url), load_catalog(data_dir), DEFAULT_INDEX, url=url)
    click.echo(f"      {result['action']}: {result['alias']} -> {result['index']} ({result['documents']} documents)")


def baseline_step(url: str, data_dir: Path | None) -> dict:
    from qrw.eval.harness import evaluate_run, format_table
    from qrw.eval.judgments import load_judgments
    from qrw.eval.runs import BaselineQueryBuilder, produce_run
    from qrw.search.catalog import default_data_dir
    from qrw.search.connect import open_client

    judgments = (data_dir or default_data_dir()) / "judgments" / "judgments.csv"
    click.echo(f"[3/3] baseline evaluation on {judgments} …")
    qrels = load_judgments(judgments)
    report = evaluate_run(produce_run(open_client(url), DEFAULT_INDEX, list(qrels), BaselineQueryBuilder(), url=url), qrels)
    click.echo(format_table(report, per_query=False))
    return report


@click.command("sandbox")
@click.option("--port", type=int, default=9200, show_default=True, help="OpenSearch HTTP port")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None, help="Icecat data folder")
def sandbox(port: int, data_dir: Path | None) -> None:
    """Real OpenSearch + the catalog indexed + the baseline evaluation."""
    _, url = start_search(port)
    index_catalog_step(url, data_dir)
    baseline_step(url, data_dir)
    click.echo(f"OpenSearch stays up at {url}; stop it with `.venv/bin/qrw opensearch stop`.")


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
