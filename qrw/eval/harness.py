"""Scoring a run against qrels, and the report shapes (table and JSON) the CLI prints."""

from __future__ import annotations

from collections.abc import Mapping

from qrw.eval.judgments import Qrels
from qrw.eval.metrics import METRIC_NAMES, mean_metrics, query_metrics
from qrw.eval.runs import Run


def evaluate_run(run: Run, qrels: Qrels) -> dict:
    """``{"queries": N, <metric>: mean, ..., "per_query": [{"query": q, <metric>: v, ...}]}``."""
    per_query = []
    for query, judged in qrels.items():
        row = {"query": query, **query_metrics(run.get(query, []), judged)}
        row["hits"] = len(run.get(query, []))
        per_query.append(row)
    return {"queries": len(per_query), **mean_metrics(per_query), "per_query": per_query}


def format_table(report: Mapping, *, per_query: bool = True) -> str:
    """A plain-text table: one row per query (optional) and the mean."""
    header = f"{'query':<28}" + "".join(f"{name:>19}" for name in METRIC_NAMES)
    lines = [header, "-" * len(header)]
    if per_query:
        for row in report["per_query"]:
            cells = "".join(
                f"{'n/a':>19}" if row[name] is None else f"{row[name]:>19.4f}" for name in METRIC_NAMES
            )
            lines.append(f"{row['query'][:27]:<28}{cells}")
        lines.append("-" * len(header))
    mean = "".join(f"{report[name]:>19.4f}" for name in METRIC_NAMES)
    lines.append(f"{'mean of ' + str(report['queries']) + ' queries':<28}{mean}")
    return "\n".join(lines)
