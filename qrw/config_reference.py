"""The configuration reference, generated from the typed models themselves, so it cannot drift.

Writes ``docs/configuration.md`` (every key of ``plugin.yaml``, the ``qrw proxy`` options, the index
profile, the ``eval`` settings section and the environment variables, each with its default and
meaning) and ``examples/plugin.yaml`` (every key at its default, with its meaning as a comment).
A test regenerates both and compares them with the committed files::

    .venv/bin/python -m qrw.config_reference          # rewrite both files after changing a model
"""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path

import click
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "configuration.md"
PLUGIN_EXAMPLE = REPO / "examples" / "plugin.yaml"

ENVIRONMENT = (
    ("QRW_OPENSEARCH_URL", "http://127.0.0.1:9200", "OpenSearch URL of every command's `--url` and of `qrw proxy --upstream`"),
    ("QRW_CACHE_DIR", "~/.cache/qrw", "downloads (wheels, the OpenSearch zip, module jars) and exported models (`models/`)"),
    ("QRW_RUNTIME_DIR", "/var/tmp/qrw", "the unpacked OpenSearch and the local nodes' folders (data, logs, pid)"),
    ("QRW_DATA_DIR", "../shared/data/icecat", "the Icecat folder (products/, judgments/)"),
    ("QRW_DEFAULT_REWRITER", "models/default-rewriter", "the folder the default model comes from (exported or checkpoint)"),
    ("QRW_CHROMIUM", "chromium on PATH", "the browser the page test drives (never downloaded)"),
)


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo):
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory in (dict, list, tuple, set):
        value = field.default_factory()
    elif field.default_factory is not None:  # computed at run time: say how
        return (field.default_factory.__doc__ or "computed").strip().splitlines()[0].replace("``", "").rstrip(".")
    else:
        return "(required)"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value)


def _limits(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                words.append(f"{sign} {getattr(item, attr)}")
    return ", ".join(words)


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{prefix}{name}.")
            continue
        meaning = field.description or ""
        limits = _limits(field)
        rows.append((f"{prefix}{name}", _type_name(annotation), _default(field), meaning + (f" ({limits})" if limits else "")))
    return rows


def _table(rows) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {kind.replace('|', '&#124;')} | `{default}` | {meaning.replace('|', '&#124;')} |"
              for key, kind, default, meaning in rows]
    return lines


def _options(command: click.Command) -> list[str]:
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        default = param.default
        if callable(default) or default is None or default is False or type(default).__module__.startswith("click"):
            shown = "" if not param.envvar else f"${param.envvar}"
        else:
            shown = str(default)
        help_text = (param.help or "").replace("|", "&#124;")
        lines.append(f"| `{' / '.join(param.opts)}` | {f'`{shown}`' if shown else ''} | {help_text} |")
    return lines


def reference() -> str:
    """The markdown of ``docs/configuration.md``."""
    from qrw.plugin.config import PluginConfig
    from qrw.proxy_cli import proxy
    from qrw.search.profile import IndexProfile
    from qrw.settings import EvalSettings

    lines = [
        "# Configuration reference",
        "",
        "Generated by `.venv/bin/python -m qrw.config_reference` from the typed models (`plugin/config.py`,",
        "`qrw/search/profile.py`, `qrw/search/baseline.py`, `qrw/settings.py`) and the `qrw proxy` command;",
        "a test fails when this file and the models differ. Unknown keys are errors everywhere.",
        "",
        "## plugin.yaml (`qrw proxy --config`, `RewritingOpenSearch`, `qrw eval --plugin-config`, `qrw calibrate --config`)",
        "",
        "Every section and key is optional; `examples/plugin.yaml` lists them all at their defaults.",
        "",
        *_table(_rows(PluginConfig)),
        "",
        "## `qrw proxy` options",
        "",
        *_options(proxy),
        "",
        "## Index profile (`--profile FILE`)",
        "",
        "One YAML file per catalog; the shipped Icecat profile is `qrw/search/profiles/icecat.yaml`, an annotated",
        "example `examples/shop/profile.yaml`. `qrw profile infer` drafts one from a live index or a JSON Lines file.",
        "",
        *_table(_rows(IndexProfile)),
        "",
        "`baseline` is a `qrw.search.baseline.BaselineSpec`: the one query builder, also used by `qrw baselines`.",
        "",
        "## `eval` section of `qrw eval --config` / `qrw baselines --config`",
        "",
        *_table(_rows(EvalSettings)),
        "",
        "## Environment variables",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
        *[f"| `{name}` | `{default}` | {meaning} |" for name, default, meaning in ENVIRONMENT],
        "",
    ]
    return "\n".join(lines)


def plugin_example() -> str:
    """``examples/plugin.yaml``: every key at its default, its meaning as a comment."""
    from qrw.plugin.config import PluginConfig

    lines = ["# Every plugin.yaml key at its default (generated: python -m qrw.config_reference).",
             "# Copy it, keep the keys you change: every section and key is optional. Reference: docs/configuration.md.",
             "# Use: qrw proxy --config plugin.yaml (also RewritingOpenSearch(config=...), qrw eval --plugin-config)."]
    defaults = PluginConfig().model_dump(mode="json")
    for section, field in PluginConfig.model_fields.items():
        lines += ["", f"{section}:  # {field.annotation.__doc__.strip().splitlines()[0]}"]
        for key, sub in field.annotation.model_fields.items():
            value = yaml.safe_dump({key: defaults[section][key]}, default_flow_style=True, width=1000).strip()[1:-1]
            lines.append(f"  {value}  # {sub.description or ''}".rstrip())
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write docs/configuration.md and examples/plugin.yaml")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from the models")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((REFERENCE, reference()), (PLUGIN_EXAMPLE, plugin_example())):
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("stale: " + ", ".join(stale) + " (run: .venv/bin/python -m qrw.config_reference)")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
