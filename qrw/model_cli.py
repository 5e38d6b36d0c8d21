"""``qrw model list|path``: which exported rewriters are cached, and where a model name leads."""

from __future__ import annotations

import json

import click


@click.group("model")
def model_group() -> None:
    """Rewrite models: 'default', exported folders, adapters or checkpoints (exported once, cached by content hash)."""


@model_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def list_command(as_json: bool) -> None:
    """The exported models in the cache ($QRW_CACHE_DIR/models), and the default model's state."""
    from qrw.errors import QrwError
    from qrw.plugin import model_store

    models = model_store.list_cached()
    try:
        default = str(model_store.resolve(model_store.DEFAULT_MODEL, export=False))
    except QrwError as exc:
        default = f"unavailable ({exc.message})"
    if as_json:
        click.echo(json.dumps({"cache": str(model_store.cache_root()), "default": default,
                               "models": [{**m.__dict__, "path": str(m.path)} for m in models]}, indent=2))
        return
    click.echo(f"cache: {model_store.cache_root()}")
    click.echo(f"default model: {default}")
    if not models:
        click.echo("no exported model cached yet (the first `qrw sandbox`, `qrw eval` or `qrw model path` exports the default)")
    for m in models:
        click.echo(f"  {m.name}  {m.size_mb:.0f} MB  {m.target}/{m.precision}  {m.prompt_version}  from {m.source or '?'}")


@model_group.command("path")
@click.argument("model", default="default")
@click.option("--no-export", is_flag=True, help="print where the export would be, without exporting")
def path_command(model: str, no_export: bool) -> None:
    """Print the loadable folder for MODEL ('default', an exported folder, an adapter/checkpoint or a .jsonl table).

    A checkpoint is exported on first use (a few minutes) unless --no-export.
    """
    from qrw.plugin import model_store

    click.echo(model_store.resolve(model, export=not no_export))
