"""The catalog a training run learns from, read through an index profile: Icecat or anyone's.

Why: the training-data builder, the GRPO rewards and the calibration must see the same products,
the same text fields and the same baseline query as the index they are measured against. A
``TrainingCatalog`` bundles them:

* ``products``: one ``Product`` per document (id, title, brand, descriptive attributes), the shape
  ``trainer.facets`` reads. For a profile's catalog, the deepest category field becomes the product
  type attribute (``product_type``), and an attribute field whose name says colour becomes the colour;
* ``documents`` and ``text_fields``: what the in-process baseline (``trainer.lexical``) indexes;
* ``baseline``: the profile's ``BaselineSpec``; ``brand_field``: where the brand guard reads brands.

``from_source(profile, catalog, data_dir)`` picks the source: a JSON Lines catalog with its profile,
or (default) the Icecat folder with the shipped Icecat profile.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qrw.search.baseline import BaselineSpec
from qrw.search.catalog import Product


@dataclasses.dataclass
class TrainingCatalog:
    name: str
    products: list[Product]
    documents: list[dict]
    ids: list[str]
    text_fields: tuple[str, ...]
    baseline: BaselineSpec
    brand_field: str | None
    source: str
    types_from_categories: bool = False
    """True when the profile names category fields: the deepest category is the product type."""

    def facets(self):
        from qrw.trainer.facets import CatalogFacets

        return CatalogFacets(self.products, type_attribute_first=self.types_from_categories)

    @property
    def brands_field(self) -> str | None:
        """The keyword field a terms aggregation reads brands from (``<brand>.raw``), or None."""
        return f"{self.brand_field}.raw" if self.brand_field else None

    def lexical_index(self):
        from qrw.trainer.lexical import LexicalIndex

        return LexicalIndex(self.documents, self.ids, self.baseline, self.text_fields)

    @classmethod
    def icecat(cls, data_dir: str | Path | None = None) -> TrainingCatalog:
        from qrw.search.catalog import default_data_dir, load_catalog
        from qrw.search.profile import load_profile

        profile = load_profile(None)
        products = load_catalog(data_dir)
        documents = [p.to_document() for p in products]
        return cls(profile.name, products, documents, [p.id for p in products], profile.searchable_fields,
                   profile.baseline, profile.brand_field, str(Path(data_dir) if data_dir else default_data_dir()))

    @classmethod
    def from_profile(cls, profile_path: str | Path, catalog_path: str | Path) -> TrainingCatalog:
        from qrw.search.documents import read_jsonl
        from qrw.search.profile import load_profile

        profile = load_profile(profile_path)
        documents = read_jsonl(catalog_path)
        products = []
        for number, doc in enumerate(documents):
            item = profile.item(doc, doc_id=str(number))
            attributes = {}
            if item.categories:
                attributes["product_type"] = item.categories[-1]
            for name, value in item.attributes.items():
                if "colo" in name.casefold():
                    attributes["product_colour"] = value
            products.append(Product(id=item.id, title=item.title or item.text[:200], supplier=item.brand,
                                    attributes=attributes))
        return cls(profile.name, products, documents, [p.id for p in products], profile.searchable_fields,
                   profile.baseline, profile.brand_field, str(catalog_path), bool(profile.category_fields))

    @classmethod
    def from_source(cls, profile: str | None, catalog: str | None, data_dir: str | None) -> TrainingCatalog:
        """A profile with its JSON Lines catalog, or the Icecat folder (``data_dir``) with the shipped profile."""
        from qrw.errors import ConfigError

        if catalog:
            if not profile:
                raise ConfigError("--catalog needs --profile (which fields are the id, title, brand, categories)")
            return cls.from_profile(profile, catalog)
        if profile:
            raise ConfigError("--profile needs --catalog FILE.jsonl (the documents the profile describes)",
                              hint="the Icecat catalog is read from --data-dir with the shipped profile")
        return cls.icecat(data_dir)

