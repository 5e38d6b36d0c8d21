"""Training cards (JSON + markdown) and PNG plots of loss and reward curves.

Why: every stage leaves a record a reader can check without rerunning: what data went in, how many
steps, how long, the final metrics, and the curves (matplotlib with the Agg backend, no display).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_curves(log_history: Sequence[Mapping], out_dir: str | Path) -> list[str]:
    """Write ``loss.png`` (training loss) and, when logged, ``reward.png`` (total and per-function rewards)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written = []
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if isinstance(value, (int, float)) and (key == "loss" or key == "eval_loss" or key.startswith("reward")):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(step)
                ys.append(float(value))
    for filename, keys in (("loss.png", ["loss", "eval_loss"]),
                           ("reward.png", sorted(k for k in series if k.startswith("reward") and not k.endswith("/std")))):
        present = [k for k in keys if k in series]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in present:
            ax.plot(*series[key], label=key, marker="." if len(series[key][0]) < 30 else None)
        ax.set_xlabel("step")
        ax.set_title(filename.removesuffix(".png"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=100)
        plt.close(fig)
        written.append(filename)
    return written


def write_card(out_dir: str | Path, card: Mapping, title: str) -> None:
    """``training_card.json`` and ``training_card.md`` in ``out_dir``."""
    out = Path(out_dir)
    (out / "training_card.json").write_text(json.dumps(card, indent=2, default=str, ensure_ascii=False))
    lines = [f"# {title}", ""]
    for key, value in card.items():
        if isinstance(value, Mapping):
            lines.append(f"## {key}")
            for k, v in value.items():
                lines.append(f"- {k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
            lines.append("")
        elif isinstance(value, list):
            lines.append(f"- {key}: {', '.join(map(str, value))}")
        else:
            lines.append(f"- {key}: {value}")
    for plot in card.get("plots", []):
        lines.append(f"\n![{plot}]({plot})")
    (out / "training_card.md").write_text("\n".join(lines) + "\n")
