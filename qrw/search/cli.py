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
    """Run a local OpenSearch node, or a small cluster on loopback (no Docker needed)."""


def _nodes_option(func):
    return click.option("--nodes", type=int, default=None,
                        help="cluster size: N nodes on ports PORT..PORT+N-1 (default: 1, or what `start --nodes` recorded)")(func)


@opensearch.command()
@_node_options
@_nodes_option
@click.option("--heap", default="512m", show_default=True, help="JVM heap per node, at most 1g")
def start(name: str, port: int, version: str, nodes: int | None, heap: str) -> None:
    """Fetch (once), start, and wait until the node (or every node of the cluster) is healthy."""
    urls = os_node.start_cluster(_config(name, port, version, heap), nodes or 1)
    click.echo(f"OpenSearch {version} is up at {', '.join(urls)}")


@opensearch.command()
@_node_options
@_nodes_option
def stop(name: str, port: int, version: str, nodes: int | None) -> None:
    """Stop the node (or cluster) started with the same --name."""
    cfg = _config(name, port, version)
    stopped = os_node.stop_cluster(cfg, nodes or os_node.recorded_size(cfg))
    click.echo(f"stopped {stopped} node(s)" if stopped else "not running")


@opensearch.command()
@_node_options
@_nodes_option
def status(name: str, port: int, version: str, nodes: int | None) -> None:
    """Print whether the node (or each cluster member) runs, and its health.

    Exit code 0 when every node runs, 1 when none does, 3 when only some do.
    """
    cfg = _config(name, port, version)
    members = os_node.cluster_members(cfg, nodes or os_node.recorded_size(cfg))
    reports = [os_node.status(member) for member in members]
    click.echo(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    running = sum(1 for r in reports if r["running"])
    raise SystemExit(0 if running == len(reports) else (1 if running == 0 else 3))


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
