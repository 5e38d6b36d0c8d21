"""Loading stage configs: dataclass defaults, then a YAML ``--config``, then CLI overrides.

Why one loader: every stage (data, pretrain, sft, grpo, evaluate) is a dataclass whose field
defaults are the one source of defaults. A YAML file and command-line flags may only name existing
fields; an unknown key is a ``ConfigError`` naming the key and the valid ones (as trl's
``HfArgumentParser`` refuses unknown arguments). Values are checked against the field's type, so a
typo like ``learning_rate: 5e-5x`` fails at load, not an hour into training.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from qrw.errors import ConfigError

C = TypeVar("C")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check (and lightly convert) ``value`` for a field annotated ``annotation``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    if origin in (dict, Mapping) or annotation is dict:
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        key_type, value_type = (typing.get_args(annotation) or (Any, Any))
        return {str(k): _coerce(f"{name}.{k}", v, value_type) for k, v in value.items()}
    if origin in (list, tuple) or annotation in (list, tuple):
        if isinstance(value, str):
            value = _parse_scalar(value)
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        item_type = (typing.get_args(annotation) or (Any,))[0]
        items = [_coerce(f"{name}[]", v, item_type) for v in value]
        return tuple(items) if origin is tuple or annotation is tuple else items
    return value


def _parse_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path`` (shared reader: ``qrw.settings.read_yaml_mapping``)."""
    from qrw.settings import read_yaml_mapping

    return read_yaml_mapping(path)


def build_config(cls: type[C], *layers: Mapping[str, Any] | None) -> C:
    """``cls`` from its defaults updated by each mapping in turn; unknown keys and bad types fail."""
    types_by_name = _field_types(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            key = key.replace("-", "_")
            if key not in types_by_name:
                raise ConfigError(
                    f"unknown config key {key!r} for {cls.__name__}",
                    hint=f"valid keys: {', '.join(sorted(types_by_name))}",
                )
            values[key] = _coerce(key, value, types_by_name[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def load_config(cls: type[C], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> C:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``."""
    return build_config(cls, read_yaml(path) if path else None, overrides)


def config_to_dict(config: Any) -> dict:
    """A JSON-safe dict of a config (paths as strings), for cards and saved run configs."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, so a run can be reproduced with ``--config``."""
    import yaml

    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def help_of(cls: type, name: str) -> str:
    """A field's help text (``metadata={"help": ...}``)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    return ""


def field(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - mirrors trl's metadata={"help"}
    """A dataclass field with a default and a help text (lists and dicts are copied per instance)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)
