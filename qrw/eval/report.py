"""A markdown report of a comparison: the summary table, then the queries a system won and lost most.

Why: averages hide what rewriting does. A search engineer decides whether to trust a rewriter by
reading its rewrites next to what they did to the ranking, so the report lists, for one rewriting
system, the largest per-query wins and losses against ``original`` with every rewrite, its tag,
P(exact) and what the gate did with it.

Judgments cover some 25 products a query, and an unjudged product counts as irrelevant. A rewrite
that brings products nobody judged therefore loses nDCG@10 whether they are right or wrong, so the
tables carry condensed nDCG@10 (unjudged products left out) and judged@10 beside it: a loss with
judged@10 falling is a loss the judgments cannot confirm, and is worth reading by eye.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

SUMMARY_COLUMNS = (
    ("nDCG@10", "ndcg@10", "{:.4f}"),
    ("× original", "ndcg@10_ratio_vs_original", "{:.3f}"),
    ("condensed nDCG@10", "condensed_ndcg@10", "{:.4f}"),
    ("judged@10", "judged@10", "{:.2f}"),
    ("recall@100", "recall@100", "{:.4f}"),
    ("P@10", "precision@10", "{:.4f}"),
    ("harm", "harm_rate", "{:.1%}"),
    ("win", "win_rate", "{:.1%}"),
    ("rewrite relevance", "rewrite_relevance_rate", "{:.1%}"),
    ("served rewrites", "served_rewrites", "{}"),
    ("0-hit retries", "zero_hit_recoveries", "{}"),
    ("index respellings", "index_respellings", "{}"),
    ("adds brand/number", "adds_brand_or_number_rate", "{:.1%}"),
    ("median hits", "median_total_hits", "{:.0f}"),
    ("p (vs original)", "p_value_vs_original", "{:.3f}"),
)


def _cell(value, fmt: str) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def summary_table(result: Mapping) -> str:
    lines = ["| system | " + " | ".join(name for name, _, _ in SUMMARY_COLUMNS) + " |",
             "|---|" + "---|" * len(SUMMARY_COLUMNS)]
    for name, system in result["systems"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(system.get(key), fmt) for _, key, fmt in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines)


def _rewrites_cell(row: Mapping) -> str:
    decisions = row.get("decisions") or []
    retried = "; 0 hits → fuzzy retry" if row.get("recovered") else ""
    if not decisions:
        return "(none)" + retried
    parts = []
    for d in decisions:
        detail = f"{d.get('tag', '')} p={d['p_exact']:.2f} " if "p_exact" in d else ""
        parts.append(f"`{d['text']}` {detail}→ {d['action']}" + (f" ×{d['weight']:g}" if d.get("weight") else ""))
    return ("; ".join(parts) + retried).replace("|", "\\|")


def _delta_cell(before, after) -> str:
    return "–" if before is None or after is None else f"{after - before:+.3f}"


def _judged_cell(before, after) -> str:
    """judged@10 of the original → of the system (one figure when it did not change)."""
    if before is None or after is None:
        return "–"
    return f"{after:.1f}" if abs(after - before) < 1e-9 else f"{before:.1f} → {after:.1f}"


def wins_and_losses(result: Mapping, system: str, n: int = 20) -> str:
    """Markdown tables of the ``n`` largest wins and losses of ``system`` against ``original``."""
    original = {row["query"]: row for row in result["systems"]["original"]["per_query"]}
    base = {query: row["ndcg@10"] for query, row in original.items()}
    rows = [(row["ndcg@10"] - base[row["query"]], row) for row in result["systems"][system]["per_query"]]
    out = []
    for title, chosen in (("wins", sorted((r for r in rows if r[0] > 0), key=lambda r: -r[0])[:n]),
                          ("losses", sorted((r for r in rows if r[0] < 0), key=lambda r: r[0])[:n])):
        out += [f"### {system}: the {n} largest {title} ({len(chosen)} queries changed in that direction, of {len(rows)})", ""]
        if not chosen:
            out += ["(none)", ""]
            continue
        out += ["| query | original nDCG@10 | system nDCG@10 | Δ | Δ condensed | judged@10 | rewrites (tag, P(exact), gate) |",
                "|---|---|---|---|---|---|---|"]
        for delta, row in chosen:
            before = original[row["query"]]
            out.append(f"| {row['query']} | {base[row['query']]:.3f} | {row['ndcg@10']:.3f} | {delta:+.3f} | "
                       f"{_delta_cell(before.get('condensed_ndcg@10'), row.get('condensed_ndcg@10'))} | "
                       f"{_judged_cell(before.get('judged@10'), row.get('judged@10'))} | {_rewrites_cell(row)} |")
        out.append("")
    return "\n".join(out)


def write_report(result: Mapping, path: Path, *, title: str, method: str, command: str, n: int = 20) -> Path:
    """The whole markdown report: method, command, summary, and wins/losses of every rewriting system."""
    lines = [f"# {title}", "", method, "", "Reproduce:", "", "```bash", command, "```", "", summary_table(result), ""]
    for name in result["systems"]:
        if name.startswith(("gated", "ungated")):
            lines += [wins_and_losses(result, name, n), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
