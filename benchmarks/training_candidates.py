"""What the training-fold measurements share: the judged training queries, the trainer's candidates, the report.

Why one module: ``rewrite_clause_targets.py``, ``gate_features.py`` and ``merge_modes.py`` all
measure the trainer's label-free candidates (``trainer.candidates.CandidateGenerator``, the ones the
training labels are measured on) on the judged queries of the training folds, never the validation
fold (fold 0); they must build them the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def training_queries() -> tuple[dict, list[str]]:
    """(all judgments, the judged queries outside the validation fold)."""
    from qrw.eval.folds import fold_of
    from qrw.eval.judgments import load_judgments
    from qrw.search.catalog import default_data_dir

    qrels = load_judgments(default_data_dir() / "judgments" / "judgments.csv")
    return qrels, [q for q in qrels if fold_of(q) != 0]


def candidate_generator(catalog):
    """The trainer's candidate generator over ``catalog`` (a ``TrainingCatalog``), as the data build makes it."""
    from qrw.trainer.bridge import catalog_texts, mine_bridge
    from qrw.trainer.candidates import CandidateGenerator, SpellingIndex

    texts = catalog_texts(catalog.products)
    return CandidateGenerator(catalog.lexical_index(), catalog.facets(), mine_bridge(texts), SpellingIndex(texts))


def emit(report: dict, path: Path | None) -> None:
    """Print the report; also write it to ``path`` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n")


def node_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc``, with the node (``--url``), the baseline's index
    alias (``--index``) and the report file (``--json``) every measurement here takes."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products", help="alias of the baseline's index (`qrw sandbox` / `qrw index`)")
    parser.add_argument("--json", type=Path, default=None)
    return parser

