"""Where ``qrw index`` gets documents: a JSON Lines file of the user's catalog, or the Icecat folder.

Why JSON Lines: it is what every catalog export can write (one product object per line), it streams,
and an error can name the line. Documents are indexed as they are; the profile says which fields
are text, which is the id, and how the rest is mapped.
"""

from __future__ import annotations

import json
from pathlib import Path

from qrw.errors import InputDataError
from qrw.search.profile import IndexProfile


def read_jsonl(path: str | Path) -> list[dict]:
    """Every JSON object of ``path``, one a line (blank lines skipped); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"catalog file not found: {path}", hint="--from takes a JSON Lines file, one product a line")
    documents = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputDataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(doc, dict):
                raise InputDataError(f"{path}:{number}: expected a JSON object, got {type(doc).__name__}")
            documents.append(doc)
    if not documents:
        raise InputDataError(f"{path}: no documents")
    return documents


def icecat_documents(data_dir: str | Path | None, profile: IndexProfile) -> list[dict]:
    """The Icecat folder's products as documents, after checking that ``profile`` fits them."""
    from qrw.search.catalog import load_catalog

    documents = [product.to_document() for product in load_catalog(data_dir)]
    fields = set(documents[0]) if documents else set()
    missing = [name for name in (profile.id_field, *profile.searchable_fields) if name not in fields]
    if missing:
        raise InputDataError(
            f"profile {profile.name!r} names fields the Icecat documents do not have: {', '.join(missing)}",
            hint="to index your own catalog, pass --from FILE.jsonl",
        )
    return documents
