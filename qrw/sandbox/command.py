"""The sandbox orchestration: each step is a function; the command runs them in order.

Ownership rule: the sandbox stops only what it started in this run. Its OpenSearch node has a name
of its own (``sandbox-<port>``, cluster ``qrw-sandbox-<port>``), so it never adopts a node that
``qrw opensearch start``, a test session or another program runs: a port taken by anything else is
an error that says how to choose another port, or how to use that node with ``--url`` (then the
sandbox neither starts nor stops OpenSearch). A sandbox node left running by ``--keep-opensearch``
is recognised by its cluster name and reused, and then left running again.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import click
import yaml

from qrw.cli_options import profile_option
from qrw.errors import ConfigError, NodeError
from qrw.search import node as os_node

WORK_DIR = Path("runs") / "sandbox"


@dataclasses.dataclass
class SearchBackend:
    url: str
    node: os_node.NodeConfig | None = None
    """The node this run started (and will stop), or None."""


def check_ports_free(ports: dict[str, int]) -> None:
    """Fail before any long step when a port the sandbox must listen on is taken."""
    for what, port in ports.items():
        if not 1 <= port <= 65535:
            raise ConfigError(f"{what} port {port} is out of range 1..65535")
        if os_node.port_in_use(port):
            flag = {"proxy": "--proxy-port", "page": "--page-port"}[what]
            raise ConfigError(f"the {what} port {port} on 127.0.0.1 is taken by another process",
                              hint=f"pass {flag} with a free port")


def start_search(port: int, url: str | None) -> SearchBackend:
    """Use ``url`` as it is, reuse this port's sandbox node, or start one; never adopt anything else."""
    if url is not None:
        from qrw.search.connect import open_client

        click.echo(f"[1/6] using OpenSearch at {url} (not started here, so not stopped either) …")
        open_client(url)
        return SearchBackend(url.rstrip("/"))
    cfg = os_node.NodeConfig(name=f"sandbox-{port}", port=port)
    if os_node.running_here(cfg):
        click.echo(f"[1/6] reusing the sandbox's own node on 127.0.0.1:{port} (left running by --keep-opensearch) …")
        return SearchBackend(cfg.http_url)
    if os_node.port_in_use(port):
        raise NodeError(
            f"port {port} on 127.0.0.1 is taken by something the sandbox did not start (another OpenSearch node?)",
            hint=f"pass --port with a free port for a node of the sandbox's own, or --url http://127.0.0.1:{port} "
                 "to use that node (the sandbox will then neither start nor stop it)",
        )
    click.echo(f"[1/6] starting OpenSearch {cfg.version} on 127.0.0.1:{port} …")
    return SearchBackend(os_node.start(cfg), cfg)


def index_step(url: str, profile, from_file: Path | None, data_dir: Path | None) -> None:
    from qrw.search.connect import open_client
    from qrw.search.documents import icecat_documents, read_jsonl
    from qrw.search.index import index_documents

    source = from_file or "the Icecat catalog"
    click.echo(f"[2/6] indexing {source} with profile {profile.name!r} …")
    documents = read_jsonl(from_file) if from_file is not None else icecat_documents(data_dir, profile)
    result = index_documents(open_client(url), documents, profile, url=url)
    click.echo(f"      {result['action']}: {result['alias']} -> {result['index']} ({result['documents']} documents)")


def default_judgments(from_file: Path | None, data_dir: Path | None) -> Path | None:
    """The Icecat development judgments when the catalog is Icecat's; a user's catalog has none by default."""
    if from_file is not None:
        return None
    from qrw.search.catalog import default_data_dir

    path = (data_dir or default_data_dir()) / "judgments" / "judgments.csv"
    return path if path.is_file() else None


def baseline_step(url: str, profile, judgments: Path | None) -> dict | None:
    from qrw.eval.harness import evaluate_run, format_table
    from qrw.eval.judgments import load_judgments
    from qrw.eval.runs import produce_run
    from qrw.search.connect import open_client

    if judgments is None:
        click.echo("[3/6] no judgments (pass --judgments CSV to see the baseline's nDCG@10); skipped")
        return None
    click.echo(f"[3/6] baseline evaluation ({profile.baseline.name}) on {judgments} …")
    qrels = load_judgments(judgments)
    report = evaluate_run(produce_run(open_client(url), profile.index, list(qrels), profile.baseline, url=url), qrels)
    click.echo(format_table(report, per_query=False))
    return report


def rewriter_step(model: str) -> Path | None:
    from qrw.errors import QrwError
    from qrw.plugin import model_store

    click.echo(f"[4/6] obtaining the rewriter ({model}) …")
    try:
        folder = model_store.resolve(model)
    except QrwError as exc:
        click.echo(f"      WARNING: {exc}\n      the proxy will serve original queries only.", err=True)
        return None
    click.echo(f"      {folder}")
    return folder


# The sandbox is for looking at rewrites: a fp32 SmolLM2 on 2 cores needs 0.5-2 s for a cold query,
# so the serving default (150 ms, then the fallback ladder) would mostly show the original query.
SANDBOX_DEADLINE_MS = 5000


def sandbox_plugin_config(config_file: Path | None, work_dir: Path) -> Path:
    """The user's plugin config (or the defaults) with the sandbox's longer model deadline and debug access
    from loopback, unless it sets them."""
    from qrw.settings import read_yaml_mapping

    data = read_yaml_mapping(config_file) if config_file is not None else {}
    chain = dict(data.get("chain") or {})
    chain.setdefault("deadline_ms", SANDBOX_DEADLINE_MS)
    data["chain"] = chain
    # The page asks for explain reports, a debug surface: allowed from this machine only.
    proxy = dict(data.get("proxy") or {})
    proxy.setdefault("debug_networks", ["127.0.0.1/32", "::1/128"])
    data["proxy"] = proxy
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "sandbox-plugin.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def start_proxy(upstream: str, model: Path | None, port: int, work_dir: Path, *, profile_file: Path | None = None,
                rules: Path | None = None, config_file: Path | None = None) -> subprocess.Popen:
    """The proxy in its own process (its own event loop and model threads), waited for until it answers."""
    config = sandbox_plugin_config(config_file, work_dir)
    command = [sys.executable, "-m", "qrw.cli", "proxy", "--upstream", upstream, "--port", str(port),
               "--log-level", "info", "--config", str(config), "--model", str(model) if model is not None else "none",
               "--config-out", str(work_dir / "proxy-plugin.yaml")]
    if profile_file is not None:
        command += ["--profile", str(profile_file)]
    if rules is not None:
        command += ["--rules", str(rules)]
    click.echo(f"[5/6] starting the rewriting proxy on 127.0.0.1:{port} …")
    process = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NodeError(f"the proxy exited with code {process.returncode} during start-up")
        if os_node.cluster_health(f"http://127.0.0.1:{port}") is not None:
            return process
        time.sleep(0.5)
    stop_process(process)
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
@click.option("--port", type=int, default=9200, show_default=True,
              help="port of the sandbox's own OpenSearch node (started here, stopped on exit)")
@click.option("--url", default=None,
              help="use this running OpenSearch instead of starting a node (never stopped by the sandbox)")
@click.option("--proxy-port", type=int, default=9201, show_default=True)
@click.option("--page-port", type=int, default=8080, show_default=True)
@profile_option
@click.option("--from", "from_file", type=click.Path(path_type=Path), default=None,
              help="your catalog as JSON Lines (with --profile) [default: the Icecat catalog]")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None, help="Icecat data folder")
@click.option("--judgments", type=click.Path(path_type=Path), default=None,
              help="judgments CSV for the baseline figures and the page's grades [default: Icecat's, for the Icecat catalog]")
@click.option("--model", default="default", show_default=True,
              help="'default', an exported folder, an adapter/checkpoint (exported once) or a .jsonl table; 'none' for no model")
@click.option("--rules", type=click.Path(path_type=Path), default=None, help="merchandiser rules file for the proxy")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="plugin YAML for the proxy")
@click.option("--keep-opensearch", is_flag=True, help="leave the sandbox's node running after Ctrl-C")
def sandbox(port: int, url: str | None, proxy_port: int, page_port: int, profile_file: Path | None,
            from_file: Path | None, data_dir: Path | None, judgments: Path | None, model: str, rules: Path | None,
            config_file: Path | None, keep_opensearch: bool) -> None:
    """Real OpenSearch + catalog + baseline evaluation + rewriter + proxy + comparison page.

    Runs until Ctrl-C, then stops everything it started (and nothing else).
    """
    from qrw.sandbox.page import PageSettings, load_page_judgments, serve_page
    from qrw.search.profile import ICECAT_PROFILE, load_profile

    profile = load_profile(profile_file)
    check_ports_free({"proxy": proxy_port, "page": page_port})
    judgments = judgments or default_judgments(from_file, data_dir)
    backend = start_search(port, url)
    proxy = None
    try:
        index_step(backend.url, profile, from_file, data_dir)
        baseline_step(backend.url, profile, judgments)
        folder = rewriter_step(model) if model != "none" else None
        proxy = start_proxy(backend.url, folder, proxy_port, WORK_DIR, profile_file=profile_file or ICECAT_PROFILE,
                            rules=rules, config_file=config_file)
        settings = PageSettings(backend.url, f"http://127.0.0.1:{proxy_port}", profile.index,
                                load_page_judgments(judgments), profile=profile)
        click.echo(
            "[6/6] ready:\n"
            f"      comparison page  http://127.0.0.1:{page_port}/\n"
            f"      rewriting proxy  http://127.0.0.1:{proxy_port}/  (OpenSearch REST API; header X-QRW-Explain: true)\n"
            f"      OpenSearch       {backend.url}/  (other qrw commands: export QRW_OPENSEARCH_URL={backend.url})\n"
            "      Ctrl-C stops everything the sandbox started."
        )
        try:
            serve_page(settings, "127.0.0.1", page_port)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how the sandbox is meant to end: stop what it started, exit 0
    finally:
        click.echo("stopping …")
        stop_process(proxy)
        if backend.node is not None and not keep_opensearch:
            os_node.stop(backend.node)
        click.echo("stopped.")


@click.command("page")
@click.option("--opensearch", "opensearch_url", default=None, help="OpenSearch URL [default: $QRW_OPENSEARCH_URL, else http://127.0.0.1:9200]")
@click.option("--proxy", "proxy_url", default="http://127.0.0.1:9201", show_default=True)
@profile_option
@click.option("--index", default=None, help="index or alias [default: the profile's index]")
@click.option("--judgments", type=click.Path(path_type=Path), default=None, help="show judged grades for these queries")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
def page(opensearch_url: str | None, proxy_url: str, profile_file: Path | None, index: str | None, judgments: Path | None,
         host: str, port: int) -> None:
    """Serve the comparison page (plain search vs. rewritten search)."""
    from qrw.sandbox.page import PageSettings, load_page_judgments, serve_page
    from qrw.search.connect import default_url
    from qrw.search.profile import load_profile

    settings = PageSettings((opensearch_url or default_url()).rstrip("/"), proxy_url.rstrip("/"), index,
                            load_page_judgments(judgments), profile=load_profile(profile_file))
    click.echo(f"comparison page on http://{host}:{port}/")
    serve_page(settings, host, port)
