"""The baseline query, built in one place: the text analysis of the index and the query over it.

Why one module: rewriting only counts if it beats the strongest plain lexical query, so evaluation,
training-data labels, calibration, the sandbox page and an index profile must all send the *same*
baseline, and the index must carry the fields it needs. Both halves live here:

* ``text_mapping(fields)``: the analysis settings and the mapping of the text fields. Every text
  field keeps the core ``standard`` analyzer (what existing clients query) and gets a ``.stem``
  sub-field (standard tokenizer, lowercase, asciifolding, possessive and Porter stemming; needs the
  ``analysis-common`` module, see ``qrw.search.modules``). Every text field is also copied into one
  catch-all field, ``all_text``, analysed the same way, with ``.std`` (standard) and ``.english``
  sub-fields so the variants below can be compared on one index, and a ``.join`` sub-field
  (``qrw_joined``): the stemmed words plus every pair of adjacent words joined without a space, at
  index and query time, so ``smart watch`` meets ``smartwatch``, ``mouse pad`` meets ``mousepad`` and
  ``headset`` meets ``head set``. Users and catalogs split and join compounds freely; a stemmer
  cannot bridge that, and it is the commonest respelling the rewriter used to serve.
* ``SIMILARITY``: the index's BM25 parameters, stated here (Lucene's defaults, ``k1`` 1.2 and ``b``
  0.75) so that the trainer's in-process BM25 reads the same constants as the index. A lower ``k1``
  was measured and not adopted: it lifts one training query, and under it the field weights chosen
  by ``qrw baselines`` change, so the two must be chosen together (``benchmarks/bm25_length_norm.py``,
  docs/eval/baselines.md).
* ``BaselineSpec``: a typed description of the query (a ``match`` on one field, or a
  ``multi_match`` of a given type over weighted fields), with ``build(query)`` -> search body.
  ``VARIANTS`` names every variant compared in docs/eval; ``DEFAULT_BASELINE`` is the strongest,
  chosen by cross-validation on the training folds only (``qrw eval baselines``), never on the
  validation queries.

The rewrite clauses of the plugin mirror whatever text clause the caller sends, so a caller who
sends ``DEFAULT_BASELINE.build(q)`` gets rewrites over the same stemmed catch-all field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qrw.plugin.merge import COMPANION_PREFIX

FUZZY_CLAUSE_NAME = COMPANION_PREFIX + "fuzzy"
CATCH_ALL = "all_text"
STEM_SUFFIX = ".stem"
JOIN_SUFFIX = ".join"
CATCH_ALL_JOINED = CATCH_ALL + JOIN_SUFFIX
STEMMED_ANALYZER = "qrw_stemmed"
JOINED_ANALYZER = "qrw_joined"

ANALYSIS: dict = {
    "filter": {
        "qrw_possessive": {"type": "stemmer", "language": "possessive_english"},
        # adjacent pairs joined without a separator, beside the single words (stemmed afterwards)
        "qrw_join_pairs": {"type": "shingle", "min_shingle_size": 2, "max_shingle_size": 2,
                           "output_unigrams": True, "token_separator": ""},
    },
    "analyzer": {
        STEMMED_ANALYZER: {
            "type": "custom",
            "tokenizer": "standard",
            "filter": ["lowercase", "asciifolding", "qrw_possessive", "porter_stem"],
        },
        JOINED_ANALYZER: {
            "type": "custom",
            "tokenizer": "standard",
            "filter": ["lowercase", "asciifolding", "qrw_possessive", "qrw_join_pairs", "porter_stem"],
        },
    },
}


BM25_K1 = 1.2
BM25_B = 0.75
SIMILARITY: dict = {"default": {"type": "BM25", "k1": BM25_K1, "b": BM25_B}}


def text_settings() -> dict:
    """The index settings the baseline needs: its analysis and its BM25 parameters."""
    return {"analysis": ANALYSIS, "similarity": SIMILARITY}


def text_field_mapping(copy_to_catch_all: bool = True, keyword: bool = False) -> dict:
    """One text field: ``standard`` analysed, with a stemmed ``.stem`` sub-field, copied into ``all_text``."""
    fields: dict = {"stem": {"type": "text", "analyzer": STEMMED_ANALYZER}}
    if keyword:
        fields["raw"] = {"type": "keyword", "ignore_above": 256}
    mapping: dict = {"type": "text", "analyzer": "standard", "fields": fields}
    if copy_to_catch_all:
        mapping["copy_to"] = [CATCH_ALL]
    return mapping


def catch_all_mapping() -> dict:
    """The catch-all field: stemmed, with a joined-pairs sub-field and standard and english ones for comparison."""
    return {
        "type": "text",
        "analyzer": STEMMED_ANALYZER,
        "fields": {"join": {"type": "text", "analyzer": JOINED_ANALYZER},
                   "std": {"type": "text", "analyzer": "standard"}, "english": {"type": "text", "analyzer": "english"}},
    }


def text_mapping(fields: Sequence[str], keyword_fields: Sequence[str] = ()) -> tuple[dict, dict]:
    """(index settings: analysis and similarity, properties) for ``fields`` plus the catch-all field."""
    properties = {name: text_field_mapping(keyword=name in keyword_fields) for name in fields}
    properties[CATCH_ALL] = catch_all_mapping()
    return text_settings(), properties


class BaselineSpec(BaseModel):
    """How the baseline query is built from the user's text. Frozen; loadable from YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the system name in reports")
    fields: tuple[str, ...] = Field(description="fields searched, each optionally with a boost: 'title.stem^2'")
    type: Literal["best_fields", "most_fields", "cross_fields"] = Field(
        "best_fields", description="multi_match type when several fields are searched")
    tie_breaker: float | None = Field(None, ge=0.0, le=1.0, description="multi_match tie_breaker")
    operator: Literal["or", "and"] = Field("or", description="how the query's terms combine")
    minimum_should_match: str | None = Field(None, description="OpenSearch minimum_should_match, e.g. '2<75%'")
    fuzziness: str | None = Field(None, description="OpenSearch fuzziness for misspelled words, e.g. 'AUTO' (not with cross_fields; with all_text.join it also reaches the joined pairs and costs more, docs/eval/headroom.md §14)")
    fuzzy_boost: float | None = Field(
        None, gt=0.0, le=1.0,
        description="weight of a fuzzy (AUTO) copy of the clause beside it, over its fields except the joined-pairs "
                    "ones: a misspelled word can still match while exact matches keep their lead (not with fuzziness)")
    description: str = Field("", description="one line for reports")

    @field_validator("fuzziness")
    @classmethod
    def _fuzziness(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"AUTO(:\d+,\d+)?|[012]", value):
            raise ValueError(f"fuzziness {value!r}: OpenSearch takes 0, 1, 2, AUTO or AUTO:low,high")
        return value

    @model_validator(mode="after")
    def _fuzziness_type(self) -> BaselineSpec:
        if self.fuzziness is not None and self.type == "cross_fields" and len(self.fields) > 1:
            raise ValueError("fuzziness does not combine with type cross_fields (OpenSearch rejects it)")
        return self

    @model_validator(mode="after")
    def _fuzzy_companion(self) -> BaselineSpec:
        if self.fuzzy_boost is None:
            return self
        if self.fuzziness is not None:
            raise ValueError("fuzzy_boost adds a fuzzy copy of an exact clause; it does not combine with fuzziness")
        if self.type == "cross_fields" and len(self.fields) > 1:
            raise ValueError("fuzzy_boost does not combine with type cross_fields (OpenSearch rejects fuzziness there)")
        if not self._fuzzy_fields():
            raise ValueError("fuzzy_boost needs a field other than the joined-pairs ones (.join)")
        return self

    def _fuzzy_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if not f.split("^", 1)[0].endswith(JOIN_SUFFIX))

    @field_validator("fields")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not f.strip() for f in value):
            raise ValueError("a baseline needs at least one non-empty field")
        return value

    def clause(self, query: str, *, boost: float | None = None, name: str | None = None) -> dict:
        """The query clause for ``query``: a ``match`` for one unboosted field, else a ``multi_match``."""
        options: dict = {}
        if self.operator != "or":
            options["operator"] = self.operator
        if self.minimum_should_match is not None:
            options["minimum_should_match"] = self.minimum_should_match
        if self.fuzziness is not None:
            options["fuzziness"] = self.fuzziness
        if boost is not None:
            options["boost"] = boost
        if name is not None:
            options["_name"] = name
        if len(self.fields) == 1 and "^" not in self.fields[0]:
            return {"match": {self.fields[0]: {"query": query, **options}}}
        clause: dict = {"query": query, "fields": list(self.fields), "type": self.type, **options}
        if self.tie_breaker is not None:
            clause["tie_breaker"] = self.tie_breaker
        return {"multi_match": clause}

    def fuzzy_clause(self, query: str) -> dict | None:
        """The fuzzy copy of the clause (``fuzzy_boost``), named ``qrw:baseline:fuzzy`` so the plugin's
        merge leaves it alone; None without ``fuzzy_boost``. Joined pairs are left out: fuzziness on
        them matches far too much (docs/eval/headroom.md §14)."""
        if self.fuzzy_boost is None:
            return None
        fuzzy = self.model_copy(update={"fields": self._fuzzy_fields(), "fuzziness": "AUTO", "fuzzy_boost": None})
        return fuzzy.clause(query, boost=self.fuzzy_boost, name=FUZZY_CLAUSE_NAME)

    def build(self, query: str) -> dict:
        """The search body (without size) for ``query``: the clause, with its fuzzy copy beside it if any."""
        companion = self.fuzzy_clause(query)
        if companion is None:
            return {"query": self.clause(query)}
        return {"query": {"bool": {"should": [self.clause(query), companion]}}}


LEGACY_FIELDS = ("title^3", "name^2", "supplier^2", "short_description", "attributes")

VARIANTS: dict[str, BaselineSpec] = {
    spec.name: spec
    for spec in (
        BaselineSpec(name="legacy_best_fields", fields=LEGACY_FIELDS, tie_breaker=0.3,
                     description="the project's first baseline: best_fields, standard analyzer, a-priori boosts"),
        BaselineSpec(name="best_fields_equal", fields=("title", "name", "supplier", "short_description", "attributes"),
                     tie_breaker=0.3, description="best_fields, standard analyzer, equal weights"),
        BaselineSpec(name="catch_all_standard", fields=(f"{CATCH_ALL}.std",),
                     description="one catch-all field, standard analyzer"),
        BaselineSpec(name="catch_all_english", fields=(f"{CATCH_ALL}.english",),
                     description="one catch-all field, english analyzer"),
        BaselineSpec(name="catch_all_stemmed", fields=(CATCH_ALL,),
                     description="one catch-all field, asciifolding + porter stemming"),
        BaselineSpec(name="catch_all_brand", fields=(CATCH_ALL, "supplier.stem^0.5"), type="most_fields",
                     description="stemmed catch-all + stemmed brand field at 0.5 (most_fields): the default until "
                                 "the joined-pairs field (2026-11-29)"),
        BaselineSpec(name="cross_fields_stemmed",
                     fields=tuple(f"{f}{STEM_SUFFIX}" for f in ("title", "name", "supplier", "short_description", "attributes")),
                     type="cross_fields", description="cross_fields over the stemmed sub-fields, equal weights"),
    )
}

DEFAULT_BASELINE = BaselineSpec(
    name="catch_all_brand_joined", fields=(CATCH_ALL, "supplier.stem^1", f"{CATCH_ALL_JOINED}^1"), type="most_fields",
    description="stemmed catch-all + stemmed brand field + joined-pairs catch-all (most_fields), weights chosen by "
                "cross-validation",
)
"""The strongest baseline: the weights ``qrw baselines`` chose by 4-fold cross-validation inside the
training folds of the development queries (CV nDCG@10 0.683 against 0.675 for the previous default,
``catch_all_brand``, and 0.661 for the untuned catch-all). The validation fold, scored after the
choice, went the other way (0.686 against 0.698: `micro sd card` and `dvd player` lost, nothing won);
the choice follows the rule written before the run, which reads the training folds only. Report and
command: ``docs/eval/baselines.md``."""
