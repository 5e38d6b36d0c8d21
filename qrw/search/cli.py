"""``qrw opensearch start|stop|status`` and ``qrw index``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qrw.cli_options import profile_option, url_option
from qrw.search import node as os_node


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
@url_option
@profile_option
@click.option("--index", "alias", default=None, help="alias to (re)build [default: the profile's index]")
@click.option("--from", "from_file", type=click.Path(path_type=Path), default=None,
              help="your catalog as JSON Lines, one product a line [default: the Icecat folder, see --data]")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Icecat folder with products/ (default: $QRW_DATA_DIR or ../shared/data/icecat)")
@click.option("--profile-out", type=click.Path(path_type=Path), default=None,
              help="where the profile of the built index is written [default: runs/profiles/ALIAS.yaml]")
@click.option("--batch-size", type=int, default=1000, show_default=True)
def index_command(url: str | None, profile_file: Path | None, alias: str | None, from_file: Path | None,
                  data_dir: Path | None, profile_out: Path | None, batch_size: int) -> None:
    """Index a catalog under an alias with the profile's mapping; a second run with the same data does nothing.

    Writes the profile of the built index (the given one, pointed at ALIAS; a baseline that names
    fields of someone else's mapping becomes the default form, which every index qrw builds supports).
    """
    from qrw.search.connect import default_url, open_client
    from qrw.search.documents import icecat_documents, read_jsonl
    from qrw.search.index import index_documents
    from qrw.search.profile import load_profile, write_profile

    url = url or default_url()
    profile = load_profile(profile_file)
    alias = alias or profile.index
    built, rebased = profile.for_built_index(alias)
    documents = read_jsonl(from_file) if from_file is not None else icecat_documents(data_dir, profile)
    client = open_client(url)
    result = index_documents(client, documents, built, alias, batch_size=batch_size, url=url)
    click.echo(f"{result['action']}: alias {result['alias']} -> {result['index']} ({result['documents']} documents)")
    out = write_profile(built, profile_out or Path("runs") / "profiles" / f"{alias}.yaml",
                        header=[f"The profile of the index `qrw index` built under the alias {alias!r}."])
    if rebased:
        click.echo(f"note: the baseline of {profile_file} searches fields this index does not have "
                   f"({', '.join(profile.missing_in_built_index())}); the written profile uses {built.baseline.name}")
    click.echo(f"profile of this index: {out} (pass it as --profile to eval, calibrate, proxy, sandbox)")


@click.group("profile")
def profile_group() -> None:
    """Index profiles: what an index holds and how the baseline query is built over it."""


@profile_group.command("infer")
@url_option
@click.option("--index", default=None, help="the live index or alias to learn from (with --from: the alias to build)")
@click.option("--from", "from_file", type=click.Path(path_type=Path), default=None,
              help="learn from a JSON Lines catalog instead, for `qrw index --from` to build")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="where to write the profile [default: runs/profiles/INDEX.yaml]")
@click.option("--name", default=None, help="the profile's name [default: the index name]")
@click.option("--sample", "sample_size", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="documents read to judge the fields")
def infer_command(url: str | None, index: str | None, from_file: Path | None, out: Path | None, name: str | None,
                  sample_size: int) -> None:
    """Draft a profile from a live index (its mapping and a sample of documents) or from a JSON Lines catalog.

    The draft runs a baseline query without hand edits; review its roles (title, brand, categories).
    """
    from qrw.errors import ConfigError
    from qrw.search.profile import write_profile

    if index is None and from_file is None:
        raise ConfigError("name a live index with --index, or a catalog file with --from")
    if from_file is not None:
        from qrw.search.documents import read_jsonl
        from qrw.search.infer import infer_from_documents

        index = index or from_file.name.split(".")[0]
        profile = infer_from_documents(read_jsonl(from_file)[:sample_size], index=index, name=name)
        origin = f"--from {from_file}"
    else:
        from qrw.search.connect import default_url, open_client
        from qrw.search.infer import infer_profile

        url = url or default_url()
        profile = infer_profile(open_client(url), index, sample_size=sample_size, url=url, name=name)
        origin = f"--index {index}"
    out = out or Path("runs") / "profiles" / f"{index}.yaml"
    write_profile(profile, out, header=[f"Drafted by `qrw profile infer {origin}` from up to {sample_size} documents.",
                                        "Review the roles and the baseline; every command takes it as --profile FILE."])
    click.echo(profile.to_yaml().rstrip())
    click.echo(f"wrote {out}")


@profile_group.command("show")
@profile_option
@click.option("--mapping", is_flag=True, help="also print the index mapping `qrw index` builds for it")
def show_command(profile_file: Path | None, mapping: bool) -> None:
    """Print a profile after validation (the shipped Icecat profile by default), and the baseline query."""
    from qrw.search.profile import load_profile

    profile = load_profile(profile_file)
    click.echo(profile.to_yaml().rstrip())
    click.echo("# baseline query for 'example':")
    click.echo("# " + json.dumps(profile.baseline.build("example")))
    if mapping:
        click.echo(json.dumps(profile.mapping(), indent=2))
