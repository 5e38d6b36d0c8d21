"""Typed loader for the Icecat electronics catalog (``shared/data/icecat``).

The product data is under the Icecat Open Content License and is provided "AS IS", without
warranty of any kind. See the data folder's README.

Why typed: the index mapping, the training-data builders and the sandbox page all read the same
fields; a ``Product`` with named attributes keeps them in agreement and makes a malformed file fail
here, with the file and the product named, instead of deep inside indexing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

from qrw.errors import InputDataError

# Text attributes that describe what a product *is* (type, family, fit) rather than logistics
# (temperatures, package sizes). They feed the ``attributes`` text field of the index. Chosen by
# reading the catalog's most frequent attr_t_* keys, not by tuning on judged queries.
DESCRIPTIVE_ATTRIBUTES: tuple[str, ...] = (
    "attr_t_product_type",
    "attr_t_type",
    "attr_t_product_family",
    "attr_t_product_series",
    "attr_t_form_factor",
    "attr_t_compatibility",
    "attr_t_brand_compatibility",
    "attr_t_product_colour",
    "attr_t_colour_of_product",
    "attr_t_processor_family",
    "attr_t_processor_manufacturer",
    "attr_t_connectivity_technology",
    "attr_t_display_resolution",
    "attr_t_compatible_operating_systems",
    "attr_t_operating_system_installed",
    "attr_t_market_segment",
    "attr_t_material",
    "attr_t_print_technology",
    "attr_t_printing_colours",
    "attr_t_ink_type",
    "attr_t_battery_technology",
    "attr_t_headphone_type",
    "attr_t_wearing_style",
    "attr_t_storage_media_type",
    "attr_t_interface",
    "attr_t_internal_memory_type",
    "attr_t_graphics_card_family",
    "attr_t_suitable_for",
    "attr_t_purpose",
    "attr_t_recommended_usage",
    "attr_t_sports_activities",
)


@dataclasses.dataclass(frozen=True)
class Product:
    """One catalog product with the fields this project uses."""

    id: str
    title: str
    name: str = ""
    supplier: str = ""
    short_description: str = ""
    price_cents: int | None = None
    ean: tuple[str, ...] = ()
    date_released: str | None = None
    image_url: str | None = None
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)
    """The descriptive ``attr_t_*`` values, key without the ``attr_t_`` prefix."""

    @property
    def attribute_text(self) -> str:
        """All descriptive attribute values as one text, in a fixed order."""
        return " ; ".join(self.attributes[key] for key in sorted(self.attributes))

    def to_document(self) -> dict:
        """The JSON document indexed into OpenSearch (see ``qrw.search.index.MAPPING``)."""
        return {
            "id": self.id,
            "title": self.title,
            "name": self.name,
            "supplier": self.supplier,
            "short_description": self.short_description,
            "attributes": self.attribute_text,
            "price": None if self.price_cents is None else self.price_cents / 100.0,
            "ean": list(self.ean),
            "date_released": self.date_released,
            "image_url": self.image_url,
        }


def default_data_dir() -> Path:
    """Where the Icecat data is: ``$QRW_DATA_DIR``, else the first of a few conventional places."""
    if os.environ.get("QRW_DATA_DIR"):
        return Path(os.environ["QRW_DATA_DIR"])
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (
        Path.cwd() / "data" / "icecat",
        Path.cwd().parent / "shared" / "data" / "icecat",
        repo_root.parent / "shared" / "data" / "icecat",
        repo_root / "data" / "icecat",
    ):
        if (candidate / "products").is_dir():
            return candidate
    return repo_root.parent / "shared" / "data" / "icecat"


def _text(raw: dict, key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    return str(value).strip()


def parse_product(raw: dict, source: str) -> Product:
    """Build a ``Product`` from one raw JSON object; raise ``InputDataError`` naming the source."""
    if not isinstance(raw, dict):
        raise InputDataError(f"{source}: expected a JSON object per product, got {type(raw).__name__}")
    product_id = _text(raw, "id")
    if not product_id:
        raise InputDataError(f"{source}: product without an 'id'")
    title = _text(raw, "title") or _text(raw, "name")
    if not title:
        raise InputDataError(f"{source}: product {product_id} has neither title nor name")
    price = raw.get("price")
    if price is not None and not isinstance(price, (int, float)):
        raise InputDataError(f"{source}: product {product_id} has a non-numeric price {price!r}")
    attributes = {
        key.removeprefix("attr_t_"): str(raw[key]).strip()
        for key in DESCRIPTIVE_ATTRIBUTES
        if raw.get(key) not in (None, "")
    }
    ean = raw.get("ean") or []
    return Product(
        id=product_id,
        title=title,
        name=_text(raw, "name"),
        supplier=_text(raw, "supplier"),
        short_description=_text(raw, "short_description"),
        price_cents=None if price is None else int(price),
        ean=tuple(str(code) for code in (ean if isinstance(ean, list) else [ean])),
        date_released=raw.get("date_released") or None,
        image_url=raw.get("img_500x500") or raw.get("img_low") or None,
        attributes=attributes,
    )


def iter_products(data_dir: str | Path | None = None) -> Iterator[Product]:
    """Yield every product from ``products/*.json.zip`` (or plain ``*.json``) in file order."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    products_dir = root / "products"
    if not products_dir.is_dir():
        raise InputDataError(
            f"catalog folder not found: {products_dir}",
            hint="pass --data DIR or set QRW_DATA_DIR to the folder that holds products/ and judgments/",
        )
    files = sorted(products_dir.glob("*.json.zip")) + sorted(products_dir.glob("*.json"))
    if not files:
        raise InputDataError(f"no *.json.zip or *.json files in {products_dir}")
    seen: set[str] = set()
    for path in files:
        try:
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as bundle:
                    members = [m for m in bundle.namelist() if m.endswith(".json")]
                    payloads = [(f"{path.name}:{m}", bundle.read(m)) for m in members]
            else:
                payloads = [(path.name, path.read_bytes())]
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputDataError(f"cannot read {path}: {exc}") from exc
        for source, payload in payloads:
            try:
                records = json.loads(payload)
            except json.JSONDecodeError as exc:
                raise InputDataError(f"{source}: not valid JSON ({exc})") from exc
            if not isinstance(records, list):
                raise InputDataError(f"{source}: expected a JSON array of products")
            for raw in records:
                product = parse_product(raw, source)
                if product.id in seen:
                    continue  # the catalog's ids are unique; a repeat would double-count in recall
                seen.add(product.id)
                yield product


def load_catalog(data_dir: str | Path | None = None) -> list[Product]:
    """All products as a list (19,406 for the shipped catalog)."""
    return list(iter_products(data_dir))
