"""``qrw proxy``: the REST proxy in front of OpenSearch (flags -> config -> one call)."""

from __future__ import annotations

import logging
from pathlib import Path

import click


@click.command("proxy")
@click.option("--upstream", required=True, help="OpenSearch base URL, e.g. http://127.0.0.1:9200")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="exported ONNX model folder (or a rewrites .jsonl table); missing or invalid: original queries are served")
@click.option("--port", type=int, default=9201, show_default=True, help="port to listen on")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), default=None, help="merchandiser rules file (PIN/BLOCK)")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="plugin YAML config (gate, chain, guards, cache, proxy)")
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def proxy(upstream: str, model_dir: Path | None, port: int, host: str, rules_file: Path | None,
          config_file: Path | None, log_level: str) -> None:
    """Run the rewriting reverse proxy: _search and _msearch are rewritten, everything else passes through."""
    import uvicorn

    from qrw.errors import ConfigError
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine, load_model
    from qrw.plugin.proxy import create_app
    from qrw.plugin.rules import load_rules

    if not upstream.startswith(("http://", "https://")):
        raise ConfigError(f"--upstream must start with http:// or https://, got {upstream!r}")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is out of range 1..65535")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(config_file)
    rules = load_rules(rules_file)
    engine = RewriteEngine(config, load_model(model_dir), rules)
    click.echo(f"qrw proxy on http://{host}:{port} -> {upstream} (model: {engine.model_name}, rules: {len(rules)})", err=True)
    try:
        uvicorn.run(create_app(engine, upstream), host=host, port=port, log_level=log_level, access_log=False,
                    timeout_keep_alive=30)
    finally:
        engine.close()
