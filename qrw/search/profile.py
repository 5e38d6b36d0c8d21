"""The index profile: one typed file that says what a catalog's index holds and how to search it.

Why: nothing in the product should know Icecat's field names. Every command that touches a
catalog (``qrw index``, ``eval``, ``calibrate``, ``proxy``, ``sandbox``, and training-data
builders) reads the same ``IndexProfile`` through ``--profile FILE``:

* where the documents are: the index or alias, and the field holding each document's id (judgments
  name documents by their ``_id``, which ``qrw index`` sets to this field's value);
* which fields are text, and the roles some of them play: the title (what a person reads), the
  brand, the categories, the descriptive attributes;
* how the baseline query is built: a ``qrw.search.baseline.BaselineSpec``, the one query builder
  (its ``fields`` carry the weights, e.g. ``supplier.stem^0.5``).

The shipped Icecat profile (``qrw/search/profiles/icecat.yaml``) reproduces the project's default
baseline exactly; ``qrw profile infer`` drafts a profile from any live index.

For a catalog indexed by ``qrw index``, ``mapping()`` builds the index: every text field gets the
analysis of ``qrw.search.baseline.text_mapping`` (standard, a stemmed ``.stem`` sub-field, copied
into the ``all_text`` catch-all), brand and category fields also an exact ``.raw`` keyword.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qrw.errors import ConfigError
from qrw.search.baseline import CATCH_ALL, CATCH_ALL_JOINED, STEM_SUFFIX, BaselineSpec, text_mapping

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
ICECAT_PROFILE = PROFILES_DIR / "icecat.yaml"
"""The shipped profile of the Icecat electronics catalog (the default of every command)."""

INDEX_SETTINGS: dict = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}
METADATA_ID = "_id"


def field_of(clause_field: str) -> str:
    """The document field a query field names: ``'title.stem^2'`` -> ``'title'``."""
    return clause_field.split("^", 1)[0].split(".", 1)[0]


def boost_of(clause_field: str) -> float:
    """The boost of a query field: ``'title.stem^2'`` -> 2.0, ``'title'`` -> 1.0."""
    _, _, boost = clause_field.partition("^")
    return float(boost) if boost else 1.0


def default_form(brand_field: str | None) -> BaselineSpec:
    """The project's default baseline form on an index ``qrw index`` built: stemmed catch-all, the
    brand's stemmed field, and the catch-all's joined-pairs sub-field, all at weight 1.

    The same form as ``qrw.search.baseline.DEFAULT_BASELINE`` (chosen by cross-validation on Icecat),
    applied to another catalog's brand field.
    """
    brand = (f"{brand_field}{STEM_SUFFIX}^1",) if brand_field else ()
    return BaselineSpec(
        name="catch_all_brand_joined" if brand else "catch_all_joined",
        fields=(CATCH_ALL, *brand, f"{CATCH_ALL_JOINED}^1"), type="most_fields",
        description="the default form on a qrw-built index: stemmed catch-all"
                    + (" + the brand's stemmed field" if brand else "") + " + joined-pairs catch-all (most_fields)")


@dataclasses.dataclass(frozen=True)
class CatalogItem:
    """One document read through a profile: the roles a consumer (training data, a page) needs."""

    id: str
    title: str
    brand: str
    categories: tuple[str, ...]
    attributes: dict[str, str]
    text: str
    """Every text field's value, in profile order, joined by ' ; '."""


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ; ".join(_as_text(v) for v in value if v not in (None, ""))
    return str(value).strip()


class IndexProfile(BaseModel):
    """What a catalog index holds and how the baseline query is built over it. Frozen; a YAML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the profile's name, shown in reports")
    index: str = Field("products", description="the index or alias searched (and built by `qrw index`)")
    id_field: str = Field("id", description="the source field holding a document's id; `qrw index` makes it the `_id` "
                                            "that judgments name. '_id' when documents carry no id field")
    title_field: str = Field(description="the field a person reads as the product's name")
    text_fields: tuple[str, ...] = Field(description="every text field to analyse and search, most important first")
    brand_field: str | None = Field(None, description="the brand or manufacturer field (brand guard, brand lists)")
    category_fields: tuple[str, ...] = Field((), description="category or product-type fields, broadest first")
    attribute_fields: tuple[str, ...] = Field((), description="descriptive attribute fields (colour, material, ...)")
    exact_fields: tuple[str, ...] | None = Field(
        None, description="text fields that also get an exact `.raw` keyword sub-field; default: brand and categories")
    other_fields: dict[str, dict] = Field(
        default_factory=dict, description="OpenSearch mappings of non-text fields, e.g. {price: {type: float}}")
    dynamic: Literal["strict", "false", "true"] = Field(
        "false", description="fields the profile does not name: 'false' keeps them in _source unsearched, "
                             "'strict' rejects documents that have them, 'true' lets OpenSearch map them")
    baseline: BaselineSpec = Field(description="how the baseline query is built (qrw.search.baseline.BaselineSpec)")

    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, data: Any) -> Any:
        # YAML reads `dynamic: false` as a boolean; OpenSearch's own spelling is fine too.
        if isinstance(data, dict) and isinstance(data.get("dynamic"), bool):
            data = {**data, "dynamic": str(data["dynamic"]).lower()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> IndexProfile:
        names = [self.id_field, self.title_field, *self.text_fields, *self.category_fields, *self.attribute_fields]
        if self.brand_field:
            names.append(self.brand_field)
        for name in names + list(self.other_fields):
            if not name or not name.strip() or "^" in name or " " in name:
                raise ValueError(f"field name {name!r} must be non-empty, without spaces or '^'")
        if not self.text_fields:
            raise ValueError("text_fields must name at least one field")
        text = set(self.searchable_fields)
        if CATCH_ALL in text or CATCH_ALL in self.other_fields:
            raise ValueError(f"{CATCH_ALL!r} is the catch-all field qrw adds to every index; rename that field")
        clash = sorted(text & set(self.other_fields))
        if clash:
            raise ValueError(f"{', '.join(clash)} cannot be both a text field and in other_fields")
        unknown_exact = sorted(set(self.exact_fields or ()) - text)
        if unknown_exact:
            raise ValueError(f"exact_fields {', '.join(unknown_exact)} are not text fields of the profile")
        known = text | {CATCH_ALL}
        unknown = [f for f in self.baseline.fields if field_of(f) not in known]
        if unknown:
            raise ValueError(
                f"baseline field(s) {', '.join(unknown)} name no text field of the profile "
                f"(known: {', '.join(sorted(known))})")
        return self

    # -- roles -----------------------------------------------------------------------------

    @property
    def searchable_fields(self) -> tuple[str, ...]:
        """Every text field in profile order: title, text fields, brand, categories, attributes (no repeats)."""
        ordered = [self.title_field, *self.text_fields]
        if self.brand_field:
            ordered.append(self.brand_field)
        ordered += [*self.category_fields, *self.attribute_fields]
        return tuple(dict.fromkeys(ordered))

    @property
    def keyword_fields(self) -> tuple[str, ...]:
        """Text fields with an exact ``.raw`` sub-field (for terms aggregations such as a brand list)."""
        if self.exact_fields is not None:
            return self.exact_fields
        return tuple(dict.fromkeys(([self.brand_field] if self.brand_field else []) + list(self.category_fields)))

    @property
    def field_weights(self) -> dict[str, float]:
        """The weight of each field in the baseline query (``all_text`` when it searches the catch-all)."""
        weights: dict[str, float] = {}
        for clause_field in self.baseline.fields:
            weights[field_of(clause_field)] = max(weights.get(field_of(clause_field), 0.0), boost_of(clause_field))
        return weights

    def item(self, source: Mapping[str, Any], doc_id: str | None = None) -> CatalogItem:
        """Read one document's ``_source`` (``doc_id``: its ``_id`` when the profile has no id field)."""
        identifier = doc_id if self.id_field == METADATA_ID else _as_text(source.get(self.id_field)) or doc_id
        return CatalogItem(
            id=str(identifier or ""),
            title=_as_text(source.get(self.title_field)),
            brand=_as_text(source.get(self.brand_field)) if self.brand_field else "",
            categories=tuple(_as_text(source.get(f)) for f in self.category_fields if _as_text(source.get(f))),
            attributes={f: _as_text(source.get(f)) for f in self.attribute_fields if _as_text(source.get(f))},
            text=" ; ".join(_as_text(source.get(f)) for f in self.searchable_fields if _as_text(source.get(f))),
        )

    # -- the index qrw builds --------------------------------------------------------------

    def mapping(self) -> dict:
        """Settings and mappings of the index ``qrw index`` builds for this profile."""
        text_index_settings, text_properties = text_mapping(self.searchable_fields, keyword_fields=self.keyword_fields)
        properties: dict = {}
        if self.id_field != METADATA_ID:
            properties[self.id_field] = {"type": "keyword"}
        properties.update(text_properties)
        properties.update(self.other_fields)
        dynamic: str | bool = self.dynamic if self.dynamic == "strict" else self.dynamic == "true"
        return {
            "settings": {**INDEX_SETTINGS, **text_index_settings},
            "mappings": {"dynamic": dynamic, "properties": properties},
        }

    def missing_in_built_index(self) -> list[str]:
        """Baseline fields that the index ``qrw index`` builds for this profile would not have.

        A profile drafted from someone else's index may search sub-fields of their mapping (say
        ``name.english``); the index qrw builds has ``.stem`` (and ``.raw`` on exact fields) instead.
        """
        properties = self.mapping()["mappings"]["properties"]
        missing = []
        for clause_field in self.baseline.fields:
            path = clause_field.split("^", 1)[0]
            root, _, sub = path.partition(".")
            spec = properties.get(root)
            if spec is None or (sub and sub not in (spec.get("fields") or {})):
                missing.append(clause_field)
        return missing

    def for_built_index(self, alias: str) -> tuple[IndexProfile, bool]:
        """This profile for the index ``qrw index`` built under ``alias``; True when the baseline had to change.

        A baseline that fits the built index is kept; one that names fields it lacks is replaced by
        the default form (``default_form``), which every index qrw builds supports.
        """
        if not self.missing_in_built_index():
            return self.model_copy(update={"index": alias}), False
        return self.model_copy(update={"index": alias, "baseline": default_form(self.brand_field)}), True

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        data["baseline"] = self.baseline.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_profile(path: str | Path | None = None) -> IndexProfile:
    """Read a profile file; ``None`` is the shipped Icecat profile."""
    path = Path(path) if path is not None else ICECAT_PROFILE
    if not path.is_file():
        raise ConfigError(f"profile file not found: {path}",
                          hint="draft one with `qrw profile infer --index NAME --out FILE`, or see examples/profile.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must hold a mapping (name, index, id_field, text_fields, baseline, ...)")
    try:
        return IndexProfile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid profile {path}: {problems}") from exc


def write_profile(profile: IndexProfile, path: str | Path, header: Iterable[str] = ()) -> Path:
    """Write ``profile`` as YAML (comment lines from ``header`` first) and check that it reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comments = "".join(f"# {line}\n" for line in header)
    path.write_text(comments + profile.to_yaml(), encoding="utf-8")
    load_profile(path)
    return path
