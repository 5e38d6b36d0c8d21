"""What a product *is*, read from its catalog record: brand, product type, a key attribute.

Why heuristics on titles: Icecat has no category tree, but its titles follow one shape,
``{Brand} {model code} {product type, lowercase words} {specs}`` (``"Xerox 008R12896 toner
cartridge"``, ``"TP-LINK TL-WN821N networking card WLAN 300 Mbit/s"``). The first run of lowercase
words is the product type; the first number with a unit is the key attribute. These rules were
written by reading catalog titles, not the judged queries.
"""

from __future__ import annotations

import dataclasses
import re

from qrw.search.catalog import Product

_TYPE_WORD = re.compile(r"^[a-z][a-z\-]+$")
_EDGE_STOPWORDS = {"for", "with", "and", "of", "in", "x", "to", "the", "a", "on", "incl", "including", "without",
                   "cm", "mm", "gb", "tb", "mb", "kg", "mah", "hz", "ghz", "mhz", "pcs", "pc", "pk", "ml", "sheets",
                   "original", "genuine", "compatible", "ft", "pixels", "ppm", "dpi", "over", "lm", "nm", "high",
                   "yield", "black", "white", "gen"}
_KEY_ATTRIBUTE = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)?)\s?(GB|TB|MB|mm|cm|\"|inch|W|mAh|GHz|MHz|Hz|Mbit/s|Gbit/s|dpi|DPI|ppm|MP|ml|L)(?![A-Za-z0-9])"
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


@dataclasses.dataclass(frozen=True)
class Facets:
    """A product's brand (as in the catalog), product type (lowercase) and key attribute (as in the title)."""

    id: str
    brand: str
    product_type: str
    key: str
    title: str

    @property
    def title_lower(self) -> str:
        return self.title.casefold()


def product_type(product: Product, max_words: int = 3) -> str:
    """The first run of lowercase words in the title (edge stop-words trimmed); else the type attribute."""
    words = product.title.split()
    best: list[str] = []
    run: list[str] = []
    for word in words[1:] + [""]:
        if _TYPE_WORD.match(word):
            run.append(word)
            continue
        while run and run[0] in _EDGE_STOPWORDS:
            run.pop(0)
        while run and run[-1] in _EDGE_STOPWORDS:
            run.pop()
        if run:
            best = run
            break
        run = []
    if best:
        return " ".join(best[:max_words])
    for key in ("product_type", "type"):
        value = product.attributes.get(key, "").strip().casefold()
        if value and len(value.split()) <= max_words and _TYPE_WORD.match(value.split()[0]) and value not in _EDGE_STOPWORDS:
            return value
    return ""


def key_attribute(product: Product) -> str:
    """The first number-with-unit in the title (``"32 GB"``, ``'27"'``), else the colour, else ``""``."""
    match = _KEY_ATTRIBUTE.search(product.title)
    if match:
        return match.group(0)
    colour = product.attributes.get("product_colour") or product.attributes.get("colour_of_product") or ""
    colour = colour.split(",")[0].strip().casefold()
    return colour if colour and len(colour.split()) == 1 else ""


def facets_of(product: Product) -> Facets:
    return Facets(product.id, product.supplier, product_type(product), key_attribute(product), product.title)


def squash(text: str) -> str:
    """Lowercase without spaces: ``"32 GB"`` and ``"32gb"`` compare equal."""
    return re.sub(r"\s+", "", text.casefold())


def numbers_in(text: str) -> set[str]:
    """The numbers written in ``text`` (``"27 inch 4k"`` -> {"27", "4"}), comma decimals as dots."""
    return {n.replace(",", ".") for n in _NUMBER.findall(text)}


def hit_grade(query: Facets, hit: Facets | None) -> int:
    """A pseudo-judgment of one retrieved product for a pseudo-query built from ``query``'s product.

    3: the source product, or same brand, type and key attribute; 2: same brand and type;
    1: same product type; 0: anything else (or an unknown id).
    """
    if hit is None:
        return 0
    if hit.id == query.id:
        return 3
    same_type = bool(query.product_type) and query.product_type in hit.title_lower
    if not same_type:
        return 0
    same_brand = bool(query.brand) and hit.brand.casefold() == query.brand.casefold()
    if not same_brand:
        return 1
    if query.key and squash(query.key) in squash(hit.title):
        return 3
    return 2
