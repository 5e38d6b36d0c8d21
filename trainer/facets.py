"""What each catalog product *is*: brand, product type and attribute values, read from the catalog.

Why: training labels must be about the query's intent (the kind of product and the attributes it
asks for), never about one source product. Intent needs a product type per product, and Icecat has
no category tree. Its titles follow one shape, ``{Brand} {model} {type, lowercase} {specs}``
(``"Xerox 008R12896 toner cartridge"``): the first run of lowercase words is the type. Runs that are
not types (colour words read from the catalog's colour attributes, units, function words) are
rejected, and a title without a usable run gets the longest known type phrase it contains
(``"HP TouchSmart tm2 Notebook PC"`` -> ``notebook``). Every rule here was written by reading
catalog titles, not judged queries.

Attribute values are normalised so that a user's ``32gb`` and the title's ``32 GB`` compare equal:
numbers with units (``32gb``, ``27inch``, ``65w``), the colour, and connectivity words.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence

from qrw.search.catalog import Product

_TYPE_WORD = re.compile(r"^[a-z][a-z\-]+$")
_FUNCTION_WORDS = frozenset(
    "for with and of in x to the a on or incl including without over per by from via new high low gen series year years "
    "yield original genuine compatible pack pcs pc pk kit set inch class born dots pixels lines sheets pages "
    "up down digital mounting lite plus pro max mini ultra standard premium basic".split()
)
_UNIT_WORDS = frozenset("cm mm m gb tb mb kb kg g mah ah wh hz ghz mhz ml l w v a ppm dpi ft lm nm mbit gbit".split())
_NUMBER_UNIT = re.compile(
    r"(?<![\w.,])(\d+(?:[.,]\d+)?)\s?(tb|gb|mb|mm|cm|m|\"|''|”|inch(?:es)?|in|w|mah|ghz|mhz|hz|mbit(?:/s)?|gbit(?:/s)?|dpi|ppm|mp|ml|l|v|kg|g|port|ports)(?![\w])",
    re.IGNORECASE,
)
_UNIT_CANON = {'"': "inch", "''": "inch", "”": "inch", "inches": "inch", "in": "inch", "ports": "port",
               "mbit/s": "mbit", "gbit/s": "gbit"}
CONNECTIVITY = ("wireless", "bluetooth", "wifi", "wi-fi", "usb", "usb-c", "hdmi", "ethernet", "wired", "nfc", "4g", "5g")


def normalize_value(number: str, unit: str) -> str:
    """``("27", '"')`` -> ``"27inch"``; ``("1,5", "TB")`` -> ``"1.5tb"``."""
    unit = unit.casefold()
    value = number.replace(",", ".")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return f"{value}{_UNIT_CANON.get(unit, unit)}"


def number_values(text: str) -> set[str]:
    """Normalised number-with-unit values written in ``text``."""
    return {normalize_value(n, u) for n, u in _NUMBER_UNIT.findall(text)}


def numbers_in(text: str) -> set[str]:
    """Every number written in ``text``, with or without a unit (``"27 inch 4k"`` -> {"27", "4"})."""
    return {n.replace(",", ".") for n in re.findall(r"\d+(?:[.,]\d+)?", text)}


@dataclasses.dataclass(frozen=True)
class Facets:
    """One product: id, brand, product type ('' if unknown), attribute values, title."""

    id: str
    brand: str
    product_type: str
    values: frozenset[str]
    title: str

    @property
    def title_lower(self) -> str:
        return self.title.casefold()


def _without_brand(title: str, brand: str) -> str:
    """The title after its leading brand (``"Tripp Lite X"`` -> ``"X"``), else after its first word."""
    if brand and title.casefold().startswith(brand.casefold() + " "):
        return title[len(brand) + 1 :]
    return title.split(" ", 1)[1] if " " in title else ""


def _raw_type(title: str, stop: frozenset[str], max_words: int) -> str:
    """The first run of lowercase words after the brand, edge stop-words trimmed ('' if none)."""
    run: list[str] = []
    for word in title.split() + [""]:
        if _TYPE_WORD.match(word):
            run.append(word)
            continue
        while run and run[0] in stop:
            run.pop(0)
        while run and run[-1] in stop:
            run.pop()
        if run:
            return " ".join(run[:max_words])
        run = []
    return ""


class CatalogFacets:
    """Facets of every product, and the catalog's vocabularies of brands, types and colours."""

    def __init__(self, products: Sequence[Product], *, min_type_count: int = 3, max_type_words: int = 3,
                 type_attribute_first: bool = False) -> None:
        """``type_attribute_first``: a catalog with a category field says each product's type outright
        (``attributes["product_type"]``); Icecat has none, so its types are read from titles."""
        colours = collections.Counter()
        for product in products:
            for key in ("product_colour", "colour_of_product"):
                for part in re.split(r"[,/]", product.attributes.get(key, "")):
                    if part.strip():
                        colours[part.strip().casefold()] += 1
        self.colours = frozenset(c for c, n in colours.items() if n >= 2 and len(c.split()) == 1)
        stop = _FUNCTION_WORDS | _UNIT_WORDS | self.colours
        if type_attribute_first:
            raw = {p.id: " ".join(p.attributes.get("product_type", "").casefold().split()) for p in products}
        else:
            raw = {p.id: _raw_type(_without_brand(p.title, p.supplier.strip()), stop, max_type_words) for p in products}
        counts = collections.Counter(t for t in raw.values() if t)
        self.types = {t: n for t, n in counts.items() if n >= min_type_count and (type_attribute_first or not set(t.split()) & stop)}
        known = sorted(self.types, key=lambda t: (-len(t.split()), -self.types[t], t))
        self.brands = frozenset(p.supplier.strip() for p in products if p.supplier.strip())
        self.by_id: dict[str, Facets] = {}
        for product in products:
            ptype = raw[product.id] if raw[product.id] in self.types else self._contained_type(
                _without_brand(product.title, product.supplier.strip()), known)
            self.by_id[product.id] = Facets(product.id, product.supplier.strip(), ptype, self._values(product), product.title)
        self.type_counts = collections.Counter(f.product_type for f in self.by_id.values() if f.product_type)

    @staticmethod
    def _contained_type(title: str, known: Sequence[str]) -> str:
        padded = " " + re.sub(r"[^\w\- ]", " ", title.casefold()) + " "
        for phrase in known:  # longest, then most frequent, first
            if f" {phrase} " in padded or f" {phrase}s " in padded:
                return phrase
        return ""

    def _values(self, product: Product) -> frozenset[str]:
        values = set(number_values(product.title))
        colour = product.attributes.get("product_colour") or product.attributes.get("colour_of_product") or ""
        values |= {c.strip().casefold() for c in re.split(r"[,/]", colour) if c.strip().casefold() in self.colours}
        text = (product.title + " " + product.attributes.get("connectivity_technology", "")).casefold()
        values |= {w.replace("wi-fi", "wifi") for w in CONNECTIVITY if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text)}
        return frozenset(values)

    def __getitem__(self, product_id: str) -> Facets:
        return self.by_id[product_id]

    def get(self, product_id: str) -> Facets | None:
        return self.by_id.get(product_id)

    def coverage(self) -> float:
        """Share of products with a known product type."""
        return sum(bool(f.product_type) for f in self.by_id.values()) / max(len(self.by_id), 1)

    def brands_in(self, text: str) -> set[str]:
        """Catalog brands named in ``text`` (whole words, case-insensitive)."""
        padded = " " + re.sub(r"[^\w\-&. ]", " ", text.casefold()) + " "
        return {b for b in self.brands if f" {b.casefold()} " in padded}

    def values_in(self, text: str) -> set[str]:
        """Attribute values ``text`` asks for: numbers with units (also squashed, ``32gb``), colours, connectivity."""
        lower = text.casefold()
        values = number_values(lower) | {normalize_value(n, u) for n, u in re.findall(r"(\d+(?:[.,]\d+)?)(tb|gb|mb|inch|w|mah|hz|ghz|mp)\b", lower)}
        words = set(re.findall(r"[\w\-]+", lower))
        values |= {c for c in self.colours if c in words}
        values |= {w.replace("wi-fi", "wifi") for w in CONNECTIVITY if w in words}
        return values


def dominant_types(type_of: Iterable[str], min_share: float = 0.3) -> set[str]:
    """The product types holding at least ``min_share`` of the typed items (the intent of a judged query)."""
    counts = collections.Counter(t for t in type_of if t)
    total = sum(counts.values())
    return {t for t, n in counts.items() if total and n / total >= min_share}


def type_matches(product: Facets | None, intent_types: Iterable[str]) -> bool:
    return product is not None and product.product_type in set(intent_types)


def grade_for_intent(product: Facets | None, ptype: str, brand: str | None, values: Iterable[str]) -> int:
    """A pseudo-judgment of one product for an intent (type, optional brand, asked values).

    3: the type, and every facet asked (brand, values) matches; 1: the type, but a facet asked does not
    match; 0: another type, or no known type. Never about one source product: any product of the kind
    asked for is as good as another.
    """
    if product is None or not ptype or product.product_type != ptype:
        return 0
    if brand and product.brand.casefold() != brand.casefold():
        return 1
    if any(v not in product.values for v in values):
        return 1
    return 3


def squash(text: str) -> str:
    """Lowercase without spaces: ``"32 GB"`` and ``"32gb"`` compare equal."""
    return re.sub(r"\s+", "", text.casefold())


def by_type(facets: CatalogFacets) -> Mapping[str, list[str]]:
    """Product ids per product type."""
    out: dict[str, list[str]] = collections.defaultdict(list)
    for f in facets.by_id.values():
        if f.product_type:
            out[f.product_type].append(f.id)
    return out
