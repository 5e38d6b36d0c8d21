"""A synthetic home-and-garden shop: a second catalog, nothing like Icecat, for trying qrw on "your own" data.

Why synthetic: the project needs a catalog with other field names and another domain to show that
nothing is tied to Icecat, and it must be small, free of licences and reproducible. Products are
drawn from a seeded generator; judgments are graded from the facets each query asks for:

* 3: every facet the query names (type, and colour / material / brand when named) matches;
* 2: the product type matches and exactly one named facet differs;
* 1: another product type of the same department;
* 0: a sample of other products.

Queries use a shopper's words, some of them synonyms that appear in only part of the catalog text
(``couch`` for a sofa, ``bedside table`` for a nightstand), which is the gap a rewriter closes.

Fields: ``sku`` (the id), ``product_name``, ``maker`` (brand), ``department``, ``kind`` (product
type), ``colour``, ``material``, ``blurb`` (description), ``price_eur``, ``in_stock``.

    python examples/shop/make_catalog.py --out examples/shop     # writes catalog.jsonl, judgments.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

MAKERS = ("Nordvik", "Casa Bella", "Greenleaf", "Oakhaven", "Lumio", "Terrazzo", "Birchwood", "Solstice",
          "Kettle & Co", "Pinecrest")
LINES = ("Fjord", "Alba", "Luna", "Verde", "Atlas", "Mira", "Koto", "Sora", "Vale", "Rune", "Elio", "Nova")
COLOURS = ("black", "white", "grey", "green", "blue", "red", "natural", "walnut")
DEPARTMENTS: dict[str, dict[str, dict]] = {
    "living room": {
        "sofa": {"materials": ("velvet", "linen", "leather"), "synonyms": ("couch", "settee")},
        "armchair": {"materials": ("velvet", "linen", "leather"), "synonyms": ("lounge chair",)},
        "coffee table": {"materials": ("oak", "walnut", "glass"), "synonyms": ("low table",)},
        "bookshelf": {"materials": ("oak", "pine", "steel"), "synonyms": ("bookcase", "shelving unit")},
        "floor lamp": {"materials": ("steel", "brass", "rattan"), "synonyms": ("standing lamp",)},
    },
    "dining": {
        "dining table": {"materials": ("oak", "walnut", "pine"), "synonyms": ("kitchen table",)},
        "dining chair": {"materials": ("oak", "rattan", "steel"), "synonyms": ("kitchen chair",)},
        "sideboard": {"materials": ("oak", "walnut", "pine"), "synonyms": ("buffet cabinet", "credenza")},
    },
    "bedroom": {
        "bed frame": {"materials": ("oak", "pine", "steel"), "synonyms": ("bedstead",)},
        "wardrobe": {"materials": ("oak", "pine", "walnut"), "synonyms": ("closet", "armoire")},
        "nightstand": {"materials": ("oak", "walnut", "rattan"), "synonyms": ("bedside table",)},
    },
    "garden": {
        "garden bench": {"materials": ("teak", "steel", "pine"), "synonyms": ("outdoor bench", "patio bench")},
        "parasol": {"materials": ("polyester", "canvas"), "synonyms": ("sun umbrella", "patio umbrella")},
        "planter": {"materials": ("ceramic", "terracotta", "steel"), "synonyms": ("plant pot", "flower pot")},
        "sun lounger": {"materials": ("teak", "rattan", "steel"), "synonyms": ("deck chair", "sunbed")},
    },
    "kitchen": {
        "saucepan": {"materials": ("stainless steel", "copper", "cast iron"), "synonyms": ("cooking pot",)},
        "chef knife": {"materials": ("stainless steel", "carbon steel"), "synonyms": ("cook's knife",)},
        "cutting board": {"materials": ("oak", "bamboo", "walnut"), "synonyms": ("chopping board",)},
    },
}
QUALITIES = ("sturdy", "elegant", "timeless", "compact", "generous", "hand-finished", "easy to clean", "modern")
ROOMS = ("small flats", "family homes", "holiday homes", "studios", "patios", "open kitchens")

# (query text, facets it asks for): kind always, then any of colour, material, maker
QUERIES: tuple[tuple[str, dict[str, str]], ...] = (
    ("sofa", {"kind": "sofa"}), ("couch", {"kind": "sofa"}), ("green velvet sofa", {"kind": "sofa", "colour": "green", "material": "velvet"}),
    ("leather couch", {"kind": "sofa", "material": "leather"}), ("armchair", {"kind": "armchair"}),
    ("linen lounge chair", {"kind": "armchair", "material": "linen"}), ("coffee table", {"kind": "coffee table"}),
    ("oak coffee table", {"kind": "coffee table", "material": "oak"}), ("bookcase", {"kind": "bookshelf"}),
    ("black floor lamp", {"kind": "floor lamp", "colour": "black"}), ("standing lamp", {"kind": "floor lamp"}),
    ("dining table", {"kind": "dining table"}), ("walnut dining table", {"kind": "dining table", "material": "walnut"}),
    ("kitchen table", {"kind": "dining table"}), ("rattan dining chair", {"kind": "dining chair", "material": "rattan"}),
    ("sideboard", {"kind": "sideboard"}), ("credenza", {"kind": "sideboard"}), ("bed frame", {"kind": "bed frame"}),
    ("pine bed", {"kind": "bed frame", "material": "pine"}), ("wardrobe", {"kind": "wardrobe"}),
    ("white closet", {"kind": "wardrobe", "colour": "white"}), ("bedside table", {"kind": "nightstand"}),
    ("garden bench", {"kind": "garden bench"}), ("teak outdoor bench", {"kind": "garden bench", "material": "teak"}),
    ("patio umbrella", {"kind": "parasol"}), ("parasol", {"kind": "parasol"}), ("flower pot", {"kind": "planter"}),
    ("ceramic planter", {"kind": "planter", "material": "ceramic"}), ("deck chair", {"kind": "sun lounger"}),
    ("copper saucepan", {"kind": "saucepan", "material": "copper"}), ("cooking pot", {"kind": "saucepan"}),
    ("chef knife", {"kind": "chef knife"}), ("chopping board", {"kind": "cutting board"}),
    ("bamboo cutting board", {"kind": "cutting board", "material": "bamboo"}),
    ("nordvik wardrobe", {"kind": "wardrobe", "maker": "Nordvik"}), ("lumio floor lamp", {"kind": "floor lamp", "maker": "Lumio"}),
)


def _department_of(kind: str) -> str:
    return next(dept for dept, kinds in DEPARTMENTS.items() if kind in kinds)


def generate_products(n: int = 400, seed: int = 7) -> list[dict]:
    """``n`` products; the same seed gives the same catalog."""
    rng = random.Random(seed)
    kinds = [(dept, kind) for dept, group in DEPARTMENTS.items() for kind in group]
    products = []
    for i in range(n):
        dept, kind = kinds[i % len(kinds)] if i < len(kinds) * 2 else rng.choice(kinds)
        spec = DEPARTMENTS[dept][kind]
        maker, line = rng.choice(MAKERS), rng.choice(LINES)
        material, colour = rng.choice(spec["materials"]), rng.choice(COLOURS)
        synonym = rng.choice(spec["synonyms"]) if rng.random() < 0.5 else kind
        blurb = (f"A {rng.choice(QUALITIES)} {synonym} in {material}, finished in {colour}. "
                 f"Made by {maker} for {rng.choice(ROOMS)}; part of the {line} collection. "
                 f"{rng.choice(QUALITIES).capitalize()} and {rng.choice(QUALITIES)}.")
        products.append({
            "sku": f"SKU-{i + 1:05d}",
            "product_name": f"{maker} {line} {material} {kind} {colour}",
            "maker": maker,
            "department": dept,
            "kind": kind,
            "colour": colour,
            "material": material,
            "blurb": blurb,
            "price_eur": round(rng.uniform(9, 1500), 2),
            "in_stock": rng.random() < 0.8,
        })
    return products


def grade(product: dict, facets: dict[str, str]) -> int:
    """The judged grade of ``product`` for a query asking for ``facets`` (see the module docstring)."""
    if product["kind"] != facets["kind"]:
        return 1 if product["department"] == _department_of(facets["kind"]) else 0
    misses = sum(1 for key, value in facets.items() if key != "kind" and product[key] != value)
    return 3 if misses == 0 else 2 if misses == 1 else 1


def generate_judgments(products: list[dict], seed: int = 7, others: int = 10) -> list[tuple[str, str, int]]:
    """(query, sku, grade) rows: every product of the query's department, plus ``others`` from elsewhere."""
    rng = random.Random(seed + 1)
    rows = []
    for query, facets in QUERIES:
        dept = _department_of(facets["kind"])
        pool = [p for p in products if p["department"] == dept]
        rest = [p for p in products if p["department"] != dept]
        pool += rng.sample(rest, min(others, len(rest)))
        rows += [(query, p["sku"], grade(p, facets)) for p in pool]
    return rows


def write(out: Path, n: int = 400, seed: int = 7) -> tuple[Path, Path]:
    """Write ``catalog.jsonl`` and ``judgments.csv`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    products = generate_products(n, seed)
    catalog = out / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in products), encoding="utf-8")
    judgments = out / "judgments.csv"
    with judgments.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["query", "docid", "rating"])
        writer.writerows(generate_judgments(products, seed))
    return catalog, judgments


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for path in write(args.out, args.products, args.seed):
        print(f"wrote {path}")
