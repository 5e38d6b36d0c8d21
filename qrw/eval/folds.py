"""Hash folds over query texts: which judged queries train and which validate.

Why hashing: a query's fold depends on its text alone, so every command (data building, baseline
selection, calibration, evaluation) agrees on the split without passing files around, and adding a
query never moves the others. Fold ``valid_fold`` is validation and is never trained or tuned on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from qrw.plugin.prompt import normalize_text

DEFAULT_FOLDS = 5
DEFAULT_VALID_FOLD = 0


def fold_of(key: str, folds: int = DEFAULT_FOLDS) -> int:
    """Deterministic fold of a query text or product id (sha1 of the normalized, casefolded text)."""
    digest = hashlib.sha1(normalize_text(key).casefold().encode()).hexdigest()
    return int(digest[:8], 16) % folds


def split_queries(queries: Iterable[str], folds: int = DEFAULT_FOLDS,
                  valid_fold: int = DEFAULT_VALID_FOLD) -> tuple[list[str], list[str]]:
    """(train queries, validation queries), each in input order."""
    train, valid = [], []
    for query in queries:
        (valid if fold_of(query, folds) == valid_fold else train).append(query)
    return train, valid
