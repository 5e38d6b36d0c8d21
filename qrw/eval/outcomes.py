"""A model's rewrites and tag probabilities for many queries, computed once for offline work (calibration).

Kept apart from ``qrw.plugin.calibrate`` (pure) because this talks to a model; searching goes
through the one offline search path, ``qrw.search.runner``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm import tqdm

from qrw.plugin.model import RewriteModel
from qrw.plugin.prompt import TAG_BY_NAME, normalize_text


def produce_outcomes(model: RewriteModel, queries: Sequence[str], num_rewrites: int, *, batch_size: int = 8,
                     progress: bool = True) -> dict[str, list[tuple[str, dict[str, float]]]]:
    """Per query, the model's rewrites and their tag probabilities (batched calls)."""
    outcomes: dict[str, list[tuple[str, dict[str, float]]]] = {}
    bar = tqdm(total=len(queries), desc=f"rewriting ({getattr(model, 'name', 'model')})", unit="q", disable=not progress)
    for start in range(0, len(queries), batch_size):
        batch = list(queries[start : start + batch_size])
        generated = model.generate(batch, num_rewrites)
        pairs = [(q, r) for q, rewrites in zip(batch, generated) for r in rewrites[:num_rewrites] if normalize_text(r)]
        tags = model.tag(pairs) if pairs else []
        for query in batch:
            outcomes[query] = []
        for (query, rewrite), probs in zip(pairs, tags):
            outcomes[query].append((normalize_text(rewrite), {name: float(probs.get(name, 0.0)) for name in TAG_BY_NAME}))
        bar.update(len(batch))
    bar.close()
    return outcomes
