"""``qrw proxy``: the REST proxy in front of OpenSearch (flags -> config -> one call).

With ``--workers N`` (N > 1) uvicorn forks N processes sharing the listening socket; each builds its
own engine (model, cache) from the same settings, passed to it in ``QRW_PROXY_SPEC``, and writes its
metrics where the others' can be summed (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import click

SPEC_VARIABLE = "QRW_PROXY_SPEC"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def read_brands(engine, upstreams: list[str]) -> None:
    """Fill the brand guard from the index (``guards.brands_field``) through the first reachable node; a
    failure is logged, and the guard keeps the configured brands."""
    import urllib.request

    body = engine.brands_request()
    if body is None:
        return
    for url in upstreams:
        try:
            request = urllib.request.Request(f"{url.rstrip('/')}/_search", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                known = engine.add_brands_from(json.loads(response.read()))
            logging.getLogger("qrw.plugin").info("brand guard: %d brands (%s from %s)", known,
                                                 engine.config.guards.brands_field, url)
            return
        except Exception as exc:  # noqa: BLE001 - the proxy starts anyway; the guard keeps its list
            logging.getLogger("qrw.plugin").warning("could not read brands from %s: %s", url, exc)


def build_app(upstreams: list[str], model_dir: str | None, rules_file: str | None, config_file: str | None):
    """The proxy app for these settings (used by the CLI in one process and by each worker).

    The configuration is the model's shipped ``serving.yaml`` (if any) overridden by ``config_file``.
    """
    from qrw.plugin import model_store
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine, load_model
    from qrw.plugin.proxy import create_app
    from qrw.plugin.rules import load_rules

    config = load_config(config_file, shipped=model_store.shipped_serving(model_dir))
    engine = RewriteEngine(config, load_model(model_dir), load_rules(rules_file))
    read_brands(engine, list(upstreams) + list(config.proxy.upstreams))
    return create_app(engine, upstreams)


def app_from_env():
    """uvicorn factory for worker processes: the settings come from ``QRW_PROXY_SPEC``."""
    spec = json.loads(os.environ[SPEC_VARIABLE])
    logging.basicConfig(level=spec["log_level"].upper(), format=LOG_FORMAT)
    return build_app(spec["upstreams"], spec["model_dir"], spec["rules_file"], spec["config_file"])


@click.command("proxy")
@click.option("--upstream", "upstreams", multiple=True,
              help="OpenSearch base URL, e.g. http://127.0.0.1:9200; repeat (or separate with commas) for several nodes")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="exported ONNX model folder (or a rewrites .jsonl table); missing or invalid: original queries are served")
@click.option("--port", type=int, default=9201, show_default=True, help="port to listen on")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), default=None, help="merchandiser rules file (PIN/BLOCK)")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="plugin YAML config (gate, chain, guards, cache, proxy)")
@click.option("--workers", type=int, default=None, help="worker processes (default: proxy.workers from the config, 1)")
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def proxy(upstreams: tuple[str, ...], model_dir: Path | None, port: int, host: str, rules_file: Path | None,
          config_file: Path | None, workers: int | None, log_level: str) -> None:
    """Run the rewriting reverse proxy: _search and _msearch are rewritten, everything else passes through."""
    import uvicorn

    from qrw.errors import ConfigError
    from qrw.plugin.config import load_config
    from qrw.plugin.proxy import serve_config
    from qrw.plugin.rules import load_rules

    urls = [u.strip() for value in upstreams for u in value.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--upstream must start with http:// or https://, got {url!r}")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is out of range 1..65535")
    config = load_config(config_file)  # fails here, in one line, on a bad file
    rules = load_rules(rules_file)
    if not urls and not config.proxy.upstreams:
        raise ConfigError("no upstream: pass --upstream URL or set proxy.upstreams in the config")
    workers = workers if workers is not None else config.proxy.workers
    if not 1 <= workers <= 64:
        raise ConfigError(f"--workers {workers} is out of range 1..64")
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    names = ", ".join(urls + list(config.proxy.upstreams))
    if workers == 1:
        app = build_app(urls, str(model_dir) if model_dir else None, str(rules_file) if rules_file else None,
                        str(config_file) if config_file else None)
        click.echo(f"qrw proxy on http://{host}:{port} -> {names} (model: {app.engine.model_name}, rules: {len(rules)})", err=True)
        try:
            uvicorn.Server(serve_config(app, host, port, log_level=log_level)).run()
        finally:
            app.engine.close()
        return
    from uvicorn.supervisors import Multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="qrw-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[SPEC_VARIABLE] = json.dumps({
        "upstreams": urls, "model_dir": str(model_dir) if model_dir else None,
        "rules_file": str(rules_file) if rules_file else None, "config_file": str(config_file) if config_file else None,
        "log_level": log_level,
    })
    click.echo(f"qrw proxy on http://{host}:{port} -> {names} ({workers} workers, rules: {len(rules)})", err=True)
    config_uv = serve_config("qrw.plugin.proxy_cli:app_from_env", host, port, log_level=log_level, workers=workers, factory=True)
    try:
        socket = config_uv.bind_socket()
        Multiprocess(config_uv, sockets=[socket]).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
