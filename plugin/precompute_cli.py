"""``qrw precompute``: fill the persistent rewrite cache for a list of queries before traffic arrives.

    qrw precompute --queries top-queries.txt --model models/rewriter-int8 [--config plugin.yaml]

The cache (``cache.store`` in the config: a SQLite file by default, or Valkey/Redis) is keyed by the
model's hash and the normalised query, so every proxy and client serving the same exported model
reads these entries, and a retrained model never reads another's. Queries already cached are
skipped unless ``--refresh``. Prints a JSON summary (counts, store, seconds).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click


@click.command("precompute")
@click.option("--queries", "queries_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="queries, one a line (blank lines ignored)")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="exported ONNX model folder")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="plugin YAML config (its cache and chain sections apply)")
@click.option("--batch-size", type=click.IntRange(1, 256), default=16, show_default=True, help="queries per model call")
@click.option("--refresh", is_flag=True, help="recompute queries that are already cached")
@click.option("--quiet", is_flag=True, help="no progress bar")
def precompute(queries_file: Path, model_dir: Path, config_file: Path | None, batch_size: int, refresh: bool, quiet: bool) -> None:
    """Compute rewrites and tags for QUERIES with MODEL and store them in the persistent cache."""
    from qrw.errors import ConfigError
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine, model_hash, open_store
    from qrw.plugin.runtime import load_model
    from qrw.plugin.runtime_manifest import ModelFolderError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(config_file)
    if config.cache.store == "memory" or config.cache.max_entries <= 0:
        raise ConfigError("the config's cache keeps nothing beyond this process (store: memory or max_entries: 0)",
                          hint="use cache.store: file (the default) or redis")
    open_store(config.cache).close()  # fail here, with the store's own message, not after minutes of work
    try:
        model = load_model(model_dir)
    except ModelFolderError as exc:
        raise ConfigError(f"cannot load the model: {exc}") from exc
    queries = [line.strip() for line in queries_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    config = config.model_copy(update={"chain": config.chain.model_copy(update={"warm_up": False}),
                                       "cache": config.cache.model_copy(update={"precompute_file": None})})
    engine = RewriteEngine(config, model)
    started = time.perf_counter()
    try:
        counts = engine.precompute(queries, batch_size=batch_size, refresh=refresh, progress=not quiet)
        stats = engine.cache.stats()
    finally:
        engine.close()
    summary = {**counts, "model": model.name, "model_hash": model_hash(model), "store": stats.get("store", "memory"),
               "seconds": round(time.perf_counter() - started, 2)}
    click.echo(json.dumps(summary, indent=2))
    if counts["failed"]:
        raise click.exceptions.Exit(1)
