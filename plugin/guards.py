"""Guards: cheap, explainable checks that drop a model rewrite before the gate sees it.

Each check is a pure function ``(query, rewrite) -> reason | None``. A rewrite is dropped when it

* names a brand the query does not (``toner`` -> ``hp toner``, ``hp toner`` -> ``canon toner``),
* holds a number the query does not (``printer`` -> ``printer 300 dpi``),
* (optional) loses a brand the query names or a number with its unit (``16gb ram`` -> ``ram``):
  off by default, since the original clause stays in the merged query,
* loses a negation (``-wireless``, ``without cable``, ``no bluetooth``, ``not refurbished``),
* keeps every word of the query and appends more after them (``tv`` -> ``tv remote``, ``samsung`` ->
  ``samsung battery``): in an English product phrase the last noun names the product, so such a
  rewrite asks for another product, usually an accessory of the one wanted. Of the 26 label-free
  training candidates of this shape 14 hurt and 2 helped (``docs/eval/headroom.md`` section 11), and
  it is the commonest harmful rewrite the trained models served (``computer`` -> ``computer case``),
* copies the query, or an earlier rewrite (case, punctuation and spacing ignored), or is too long.

Drift in brand, number and type is exactly what the JD.com paper reports as harmful rewrites; these
catch the first two without a model. Brands come from the config, a file, or the index itself
(``brands_field``: ``brands_from_terms`` reads a terms aggregation).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from qrw.errors import InputDataError
from qrw.plugin.config import GuardConfig
from qrw.plugin.prompt import normalize_text

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)

UNITS = {
    "tb": "tb", "gb": "gb", "mb": "mb", "kb": "kb", "mah": "mah", "ah": "ah", "wh": "wh",
    "ghz": "ghz", "mhz": "mhz", "khz": "khz", "hz": "hz",
    "mm": "mm", "cm": "cm", "m": "m", "km": "km",
    "inch": "inch", "inches": "inch", "in": "inch", '"': "inch", "''": "inch", "zoll": "inch",
    "w": "w", "kw": "kw", "v": "v", "a": "a", "kg": "kg", "g": "g", "l": "l", "ml": "ml",
    "mp": "mp", "ppm": "ppm", "dpi": "dpi", "rpm": "rpm", "p": "p", "k": "k", "x": "x",
    "port": "port", "ports": "port", "pcs": "pcs", "pack": "pack", "bit": "bit",
    # data rates, as catalog titles write them (``1000Mbit``, ``100 Mbps``): without them ``1000mbit`` was no number
    "kbit": "kbit", "mbit": "mbit", "gbit": "gbit", "kbps": "kbit", "mbps": "mbit", "gbps": "gbit",
}
_UNIT_ALTERNATION = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
_NUMBER = re.compile(
    rf"(?<![\w.,])(\d+(?:[.,]\d+)?)\s?({_UNIT_ALTERNATION})?(?![\w])",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"(?:(?<!\S)-(\w[\w-]*)|\b(?:without|no|not|non|w/o)[\s-]+(\w[\w-]*))", re.IGNORECASE)


def copy_key(text: str) -> str:
    """Case, punctuation and spacing removed: two texts with the same key are copies."""
    return " ".join(_NON_WORD.sub(" ", normalize_text(text).casefold()).split())


def _canonical_number(text: str) -> str:
    value = text.replace(",", ".")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value.lstrip("0") or "0"


def numbers(text: str) -> set[tuple[str, str | None]]:
    """(number, unit or None) pairs standing as their own tokens: ``16gb``, ``16 GB``, ``27"``, ``3``."""
    found = set()
    for match in _NUMBER.finditer(normalize_text(text).casefold()):
        unit = UNITS.get(match.group(2).lower()) if match.group(2) else None
        found.add((_canonical_number(match.group(1)), unit))
    return found


def negations(text: str) -> set[str]:
    """The negated words: ``-wireless`` / ``without wireless`` / ``no wireless`` all give ``wireless``."""
    return {(a or b).casefold() for a, b in _NEGATION.findall(normalize_text(text))}


def brands_in(text: str, brands: Iterable[str]) -> set[str]:
    """Brands (already ``copy_key`` form) that occur in ``text`` as whole words."""
    padded = f" {copy_key(text)} "
    return {brand for brand in brands if brand and f" {brand} " in padded}


def lost_brand(query: str, rewrite: str, brands: Iterable[str]) -> str | None:
    brands = tuple(brands)
    missing = brands_in(query, brands) - brands_in(rewrite, brands)
    return f"loses brand {sorted(missing)[0]!r}" if missing else None


def lost_number(query: str, rewrite: str) -> str | None:
    have = numbers(rewrite)
    for number, unit in sorted(numbers(query), key=str):
        if unit is None:
            if not any(n == number for n, _ in have):
                return f"loses number {number}"
        elif (number, unit) not in have:
            return f"loses {number}{unit}"
    return None


def new_brand(query: str, rewrite: str, brands: Iterable[str]) -> str | None:
    brands = tuple(brands)
    added = brands_in(rewrite, brands) - brands_in(query, brands)
    return f"adds brand {sorted(added)[0]!r}" if added else None


def new_number(query: str, rewrite: str) -> str | None:
    have = {number for number, _ in numbers(query)}
    added = sorted(number for number, _ in numbers(rewrite) if number not in have)
    return f"adds number {added[0]}" if added else None


def appends_after_query(query: str, rewrite: str) -> str | None:
    """The words a rewrite appends after all of the query's (``tv`` -> ``tv remote``: ``remote``), as a reason."""
    have, words = copy_key(query).split(), copy_key(rewrite).split()
    if have and len(words) > len(have) and words[: len(have)] == have:
        return f"names another product after the query ({' '.join(words[len(have):])!r})"
    return None


def lost_negation(query: str, rewrite: str) -> str | None:
    missing = negations(query) - negations(rewrite)
    return f"loses negation of {sorted(missing)[0]!r}" if missing else None


def brands_aggregation(config: GuardConfig) -> dict | None:
    """The search body that reads brands from the index (a terms aggregation), or None without ``brands_field``."""
    if not config.brands_field:
        return None
    return {"size": 0, "aggs": {"brands": {"terms": {"field": config.brands_field, "size": config.brands_max}}}}


def brands_from_response(response: dict) -> list[str]:
    """The brand names of a ``brands_aggregation`` response."""
    buckets = ((response or {}).get("aggregations") or {}).get("brands", {}).get("buckets", [])
    return [str(bucket["key"]) for bucket in buckets if bucket.get("key")]


def load_brands(config: GuardConfig, extra: Iterable[str] = ()) -> frozenset[str]:
    """The brand vocabulary in ``copy_key`` form: the config's list, its ``brands_file`` and ``extra`` (from the index)."""
    names = list(config.brands) + list(extra)
    if config.brands_file is not None:
        path = Path(config.brands_file)
        if not path.is_file():
            raise InputDataError(f"brands file not found: {path}")
        names += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    return frozenset(key for key in (copy_key(name) for name in names) if key)


def check(query: str, rewrites: Sequence[str], config: GuardConfig, brands: frozenset[str]) -> list[str | None]:
    """For each rewrite: None if it passes every guard, else the first reason to drop it."""
    reasons: list[str | None] = []
    seen = {copy_key(query)}
    for rewrite in rewrites:
        key = copy_key(rewrite)
        reason: str | None = None
        if not key:
            reason = "empty"
        elif len(rewrite.split()) > config.max_rewrite_words:
            reason = f"longer than {config.max_rewrite_words} words"
        elif config.drop_copies and key == copy_key(query):
            reason = "copies the query"
        elif config.drop_copies and key in seen:
            reason = "duplicates an earlier rewrite"
        elif config.no_new_brand and brands and (added := new_brand(query, rewrite, brands)):
            reason = added
        elif config.no_new_number and (added := new_number(query, rewrite)):
            reason = added
        elif config.keep_brand and brands and (lost := lost_brand(query, rewrite, brands)):
            reason = lost
        elif config.keep_numbers and (lost := lost_number(query, rewrite)):
            reason = lost
        elif config.keep_negations and (lost := lost_negation(query, rewrite)):
            reason = lost
        elif config.keep_head and (appended := appends_after_query(query, rewrite)):
            reason = appended
        seen.add(key)
        reasons.append(reason)
    return reasons
