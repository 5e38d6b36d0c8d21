"""Typed settings shared by the CLI commands: one source of defaults, a YAML file, then flags.

Precedence (lowest to highest): the defaults declared on the pydantic models here, a YAML file given
with ``--config`` (one section per command group, unknown keys rejected), then explicit CLI flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qrw.errors import ConfigError
from qrw.search.connect import DEFAULT_INDEX, default_url

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchSettings(Strict):
    """Where the product index lives."""

    url: str = Field(default_factory=default_url, description="OpenSearch base URL ($QRW_OPENSEARCH_URL, else http://127.0.0.1:9200)")
    index: str = Field(DEFAULT_INDEX, description="index or alias holding the catalog")


class EvalSettings(Strict):
    """How ``qrw eval`` runs."""

    search: SearchSettings = SearchSettings()
    depth: int = Field(100, ge=10, le=10000, description="hits fetched per query (recall@100 needs 100)")
    batch_size: int = Field(20, ge=1, le=500, description="queries per msearch request")


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML mapping from ``path`` (an empty file is an empty mapping); every config file goes through here."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_settings(model: type[Model], config_file: str | Path | None, section: str, overrides: dict) -> Model:
    """Build ``model`` from defaults, then ``section`` of ``config_file``, then non-None ``overrides``."""
    data: dict = {}
    if config_file is not None:
        data = dict(read_yaml_mapping(config_file).get(section) or {})
    for dotted, value in overrides.items():
        if value is None:
            continue
        target = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings for '{section}': {exc}") from exc
