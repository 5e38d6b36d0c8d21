"""``qrw opensearch start|stop|status`` and ``qrw index``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qrw.search import node as os_node
from qrw.search.connect import DEFAULT_INDEX, DEFAULT_URL


def _node_options(func):
    func = click.option("--name", default="default", show_default=True, help="node folder name")(func)
    func = click.option("--port", type=int, default=9200, show_default=True, help="HTTP port on 127.0.0.1")(func)
    func = click.option("--version", "version", default=os_node.DEFAULT_VERSION, show_default=True,
                        help="OpenSearch version (integ-test-zip from Maven Central)")(func)
    return func


def _config(name: str, port: int, version: str, heap: str = "512m") -> os_node.NodeConfig:
    return os_node.NodeConfig(name=name, port=port, version=version, heap=heap)


@click.group()
def opensearch() -> None:
    """Run a local single-node OpenSearch (no Docker needed)."""


@opensearch.command()
@_node_options
@click.option("--heap", default="512m", show_default=True, help="JVM heap, at most 1g")
def start(name: str, port: int, version: str, heap: str) -> None:
    """Fetch (once), start, and wait until the node is healthy."""
    url = os_node.start(_config(name, port, version, heap))
    click.echo(f"OpenSearch {version} is up at {url}")


@opensearch.command()
@_node_options
def stop(name: str, port: int, version: str) -> None:
    """Stop the node started with the same --name."""
    stopped = os_node.stop(_config(name, port, version))
    click.echo("stopped" if stopped else "not running")


@opensearch.command()
@_node_options
def status(name: str, port: int, version: str) -> None:
    """Print whether the node runs, and its health."""
    click.echo(json.dumps(os_node.status(_config(name, port, version)), indent=2))


@click.command("index")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="OpenSearch base URL")
@click.option("--index", "alias", default=DEFAULT_INDEX, show_default=True, help="alias to (re)build")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Icecat folder with products/ (default: $QRW_DATA_DIR or ../shared/data/icecat)")
@click.option("--batch-size", type=int, default=1000, show_default=True)
def index_command(url: str, alias: str, data_dir: Path | None, batch_size: int) -> None:
    """Index the catalog under an alias; a second run with the same data does nothing."""
    from qrw.search.catalog import load_catalog
    from qrw.search.connect import open_client
    from qrw.search.index import index_catalog

    client = open_client(url)
    products = load_catalog(data_dir)
    result = index_catalog(client, products, alias, batch_size=batch_size, url=url)
    click.echo(f"{result['action']}: alias {result['alias']} -> {result['index']} ({result['documents']} documents)")
