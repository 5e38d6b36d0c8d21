"""PNG plots of a comparison: per-query nDCG@10 deltas against ``original``, and a latency CDF."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_deltas(result: Mapping, out: Path) -> Path:
    """One panel per system: per-query nDCG@10 minus original's, sorted, harmed queries in red."""
    plt = _pyplot()
    base = {row["query"]: row["ndcg@10"] for row in result["systems"]["original"]["per_query"]}
    others = [name for name in result["systems"] if name != "original"]
    fig, axes = plt.subplots(max(1, len(others)), 1, figsize=(10, 2.6 * max(1, len(others))), squeeze=False)
    for ax, name in zip(axes[:, 0], others):
        deltas = sorted(row["ndcg@10"] - base[row["query"]] for row in result["systems"][name]["per_query"])
        colors = ["#c0392b" if d < -0.05 else "#27ae60" if d > 0.05 else "#95a5a6" for d in deltas]
        ax.bar(range(len(deltas)), deltas, color=colors, width=1.0)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel("Δ nDCG@10")
        ax.set_title(f"{name} vs original ({len(deltas)} queries, sorted)", fontsize=10)
        ax.set_xticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_latency_cdf(result: Mapping, out: Path) -> Path:
    """Empirical CDF of the rewrite-step latency of every system that has one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for name, system in result["systems"].items():
        samples = sorted(system.get("latency_samples_ms") or [])
        if not samples:
            continue
        ax.step(samples, [(i + 1) / len(samples) for i in range(len(samples))], where="post", label=name)
        drawn += 1
    ax.set_xlabel("rewrite step latency per query (ms)")
    ax.set_ylabel("share of queries")
    ax.set_title("Rewrite-step latency CDF" + ("" if drawn else " (no system with a rewrite step)"))
    if drawn:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
