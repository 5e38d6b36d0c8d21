"""A ``RewriteModel`` that reads its answers from a table: precomputed or hand-written rewrites and tags.

Why: rewrites computed offline (by the ONNX model on a bigger machine, or by a merchandiser) can be
served, calibrated and evaluated exactly like a live model's, and tests exercise the real chain with
known answers. JSON Lines, one query per line::

    {"query": "laptop", "rewrites": [{"text": "notebook", "probabilities": {"exact": 0.9, "substitute": 0.1}},
                                     {"text": "laptop bag", "tag": "weak"}]}

``tag`` is shorthand for probability 1 on that tag. Unknown queries get no rewrites; an unknown
(query, rewrite) pair is tagged ``irrelevant``. Queries are matched case- and space-insensitively.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from qrw.plugin.errors import RuleSyntaxError
from qrw.plugin.prompt import TAG_BY_NAME, normalize_text


def _key(text: str) -> str:
    return normalize_text(text).casefold()


class TableRewriteModel:
    def __init__(self, table: dict[str, list[tuple[str, dict[str, float]]]], name: str = "table") -> None:
        self.name = name
        self._rewrites = {_key(q): [text for text, _ in rows] for q, rows in table.items()}
        self._tags = {(_key(q), _key(text)): probs for q, rows in table.items() for text, probs in rows}

    @classmethod
    def from_file(cls, path: str | Path) -> TableRewriteModel:
        path = Path(path)
        if not path.is_file():
            raise RuleSyntaxError(f"rewrite table not found: {path}")
        table: dict[str, list[tuple[str, dict[str, float]]]] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
                query = row["query"]
                rows = []
                for item in row.get("rewrites", []):
                    if "tag" in item:
                        if item["tag"] not in TAG_BY_NAME:
                            raise ValueError(f"unknown tag {item['tag']!r}; one of {', '.join(TAG_BY_NAME)}")
                        probs = {name: float(name == item["tag"]) for name in TAG_BY_NAME}
                    else:
                        given = {k: float(v) for k, v in item["probabilities"].items()}
                        unknown = set(given) - set(TAG_BY_NAME)
                        if unknown:
                            raise ValueError(f"unknown tag(s) {sorted(unknown)}")
                        total = sum(given.values())
                        if total <= 0:
                            raise ValueError("probabilities sum to 0")
                        probs = {name: given.get(name, 0.0) / total for name in TAG_BY_NAME}
                    rows.append((str(item["text"]), probs))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise RuleSyntaxError(f"{where}: {exc}", hint='each line: {"query": ..., "rewrites": [{"text": ..., "tag": "exact"}]}') from None
            table.setdefault(query, []).extend(rows)
        return cls(table, name=f"table:{path.name}")

    def generate(self, queries: Sequence[str], num_rewrites: int) -> list[list[str]]:
        return [list(self._rewrites.get(_key(q), []))[:num_rewrites] for q in queries]

    def tag(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, float]]:
        irrelevant = {name: float(name == "irrelevant") for name in TAG_BY_NAME}
        return [dict(self._tags.get((_key(q), _key(r)), irrelevant)) for q, r in pairs]
