"""Read a judgments CSV (``query,docid,rating``) into qrels ``{query: {docid: grade}}``.

Why strict: a judgments file is the ground truth every figure in this project rests on. A row with
a rating that is not an integer 0-3, a missing column, or a duplicate (query, docid) with two
different grades is an error naming the line, never a silently skipped row.
"""

from __future__ import annotations

import csv
from pathlib import Path

from qrw.errors import InputDataError

Qrels = dict[str, dict[str, int]]
REQUIRED_COLUMNS = ("query", "docid", "rating")
MIN_GRADE, MAX_GRADE = 0, 3


def load_judgments(path: str | Path) -> Qrels:
    """Parse ``path``; queries keep their order of first appearance."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"judgments file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read judgments file {path}: {exc}") from exc
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise InputDataError(
            f"{path}: missing column(s) {', '.join(missing)}; header is {header or 'empty'}",
            hint="the expected header is: query,docid,rating",
        )
    reader.fieldnames = header
    qrels: Qrels = {}
    for line_number, row in enumerate(reader, start=2):
        query = (row.get("query") or "").strip()
        docid = (row.get("docid") or "").strip()
        raw_rating = (row.get("rating") or "").strip()
        if not query or not docid:
            raise InputDataError(f"{path}:{line_number}: empty query or docid")
        try:
            grade = int(raw_rating)
        except ValueError:
            raise InputDataError(
                f"{path}:{line_number}: rating {raw_rating!r} is not an integer (expected {MIN_GRADE}-{MAX_GRADE})"
            ) from None
        if not MIN_GRADE <= grade <= MAX_GRADE:
            raise InputDataError(f"{path}:{line_number}: rating {grade} is outside {MIN_GRADE}-{MAX_GRADE}")
        previous = qrels.setdefault(query, {}).get(docid)
        if previous is not None and previous != grade:
            raise InputDataError(
                f"{path}:{line_number}: ({query!r}, {docid}) is judged twice, {previous} and {grade}"
            )
        qrels[query][docid] = grade
    if not qrels:
        raise InputDataError(f"{path}: no judgments (the file has a header but no rows)")
    return qrels
