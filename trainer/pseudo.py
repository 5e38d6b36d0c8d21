"""Pseudo-queries written the way shoppers type, each with the intent it expresses.

Why: 75 judged training queries are too few to teach a model the catalog's vocabulary, and a model
trained only on queries that already match the catalog would learn that rewriting never helps.
Pseudo-queries are cut from catalog products (type, brand, attribute values) and then *worded* the
way users type: lowercase, a shopper's form from the mined vocabulary bridge (``head set``,
``fiber``, ``ups``), squashed values (``32gb``), plurals, a misspelling, a word with no product
meaning (``cheap``). The intent is the product *kind* (type, plus the brand and values the query
names), never the product the query was cut from: any product of that kind is as relevant as it.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterable, Sequence

from qrw.trainer.bridge import Bridge
from qrw.trainer.candidates import FILLER_WORDS
from qrw.trainer.facets import CatalogFacets

TEMPLATES: tuple[tuple[str, float], ...] = (
    ("type", 0.30), ("brand type", 0.20), ("value type", 0.25), ("type value", 0.10), ("brand value type", 0.15),
)
"""How pseudo-queries combine facets, with their sampling weights."""
_FILLERS = tuple(sorted(FILLER_WORDS))


@dataclasses.dataclass(frozen=True)
class PseudoQuery:
    query: str
    ptype: str
    brand: str | None
    values: tuple[str, ...]
    template: str
    transforms: tuple[str, ...]


def _user_value(value: str, rng: random.Random) -> str:
    """A normalised value as a shopper writes it: ``27inch`` -> ``27 inch`` / ``27in`` / ``27"``-less forms."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", value)
    if not match:
        return value
    number, unit = match.groups()
    if unit == "inch":
        return rng.choice((f"{number} inch", f"{number}inch", f"{number} in"))
    return rng.choice((f"{number}{unit}", f"{number} {unit}"))


def _misspell(word: str, rng: random.Random) -> str:
    if len(word) < 5 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 2)
    op = rng.choice(("swap", "drop", "double"))
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _pluralize(word: str) -> str:
    if word.endswith(("s", "x")) or not word.isalpha():
        return word
    return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"


def make_pseudo_query(product_id: str, facets: CatalogFacets, bridge: Bridge, rng: random.Random) -> PseudoQuery | None:
    """One user-style query for the kind of product ``product_id`` is, or None if it has no usable type."""
    product = facets[product_id]
    if not product.product_type:
        return None
    template = rng.choices([t for t, _ in TEMPLATES], weights=[w for _, w in TEMPLATES])[0]
    brand = product.brand if "brand" in template and product.brand else None
    values = sorted(product.values)
    value = rng.choice(values) if "value" in template and values else None
    if ("brand" in template and brand is None) or ("value" in template and value is None):
        template, brand, value = "type", None, None
    ptype = product.product_type
    transforms: list[str] = []
    type_words = ptype
    user_forms = bridge.user_forms(ptype)
    if user_forms and rng.random() < 0.5:
        type_words = rng.choice(user_forms)
        transforms.append("bridge")
    if rng.random() < 0.15:
        words = type_words.split()
        type_words = " ".join(words[:-1] + [_pluralize(words[-1])])
        transforms.append("plural")
    parts: list[str] = []
    if brand:
        parts.append(brand.casefold())
    if value and template.startswith(("value", "brand value")):
        parts.append(_user_value(value, rng))
    parts.append(type_words)
    if value and template == "type value":
        parts.append(_user_value(value, rng))
    words = " ".join(parts).split()
    if rng.random() < 0.05:
        j = rng.randrange(len(words))
        misspelt = _misspell(words[j], rng)
        if misspelt != words[j]:
            words[j] = misspelt
            transforms.append("misspelling")
    if rng.random() < 0.03:
        words.insert(rng.choice((0, len(words))), rng.choice(_FILLERS))  # before or after, never inside a name
        transforms.append("filler")
    query = " ".join(words).casefold()
    return PseudoQuery(query, ptype, brand, (value,) if value else (), template, tuple(transforms))


def sample_pseudo_queries(facets: CatalogFacets, bridge: Bridge, n: int, rng: random.Random, *,
                          exclude: Iterable[str] = (), min_type_count: int = 5) -> list[PseudoQuery]:
    """``n`` distinct pseudo-queries over diverse product kinds (types sampled by the square root of their size).

    Queries whose squashed text equals one in ``exclude`` (the validation queries) are dropped.
    """
    excluded = {re.sub(r"\s+", "", q.casefold()) for q in exclude}
    by_type: dict[str, list[str]] = {}
    for f in facets.by_id.values():
        if f.product_type and facets.type_counts[f.product_type] >= min_type_count:
            by_type.setdefault(f.product_type, []).append(f.id)
    types = sorted(by_type)
    weights = [len(by_type[t]) ** 0.5 for t in types]
    out: dict[str, PseudoQuery] = {}
    attempts = 0
    while len(out) < n and attempts < n * 20:
        attempts += 1
        ptype = rng.choices(types, weights=weights)[0]
        made = make_pseudo_query(rng.choice(by_type[ptype]), facets, bridge, rng)
        if made is None or made.query in out or re.sub(r"\s+", "", made.query) in excluded:
            continue
        out[made.query] = made
    return list(out.values())


def describe(pseudo: Sequence[PseudoQuery]) -> dict:
    """Counts by template and transform, for the data card."""
    import collections

    return {
        "templates": dict(collections.Counter(p.template for p in pseudo)),
        "transforms": dict(collections.Counter(t for p in pseudo for t in p.transforms)),
        "types": len({p.ptype for p in pseudo}),
    }
