"""The gate policy: a rewrite's tag probabilities -> what happens to it. Pure; no I/O, no state.

Policy (thresholds in ``GateConfig``, chosen by ``qrw calibrate``):

1. ``P(exact) >= full_min``                       -> ``full``: OR-merged with boost ``full_weight``;
2. else ``P(exact) + P(substitute) >= keep_min``  -> ``down``: OR-merged with boost ``down_weight`` (< 1);
3. else                                           -> ``drop``.

Why two sums rather than the arg-max tag alone: a rewrite at 45% exact and 40% substitute is a safe
substitute even though neither tag wins alone, and a rewrite the model is unsure of ("weak" at 35%,
everything else spread) must not ride on a narrow arg-max.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Literal

from qrw.plugin.config import GateConfig
from qrw.plugin.prompt import TAGS

Action = Literal["full", "down", "drop"]


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the gate decided for one rewrite, and why (for the explain log)."""

    action: Action
    weight: float
    """The clause boost; 0.0 when dropped."""
    tag: str
    """The arg-max tag (ties go to the higher grade)."""
    probability: float
    """The arg-max tag's probability."""
    reason: str

    @property
    def kept(self) -> bool:
        return self.action != "drop"


def top_tag(probabilities: Mapping[str, float]) -> tuple[str, float]:
    """The most probable tag; ties go to the higher grade (``TAGS`` is ordered exact first)."""
    best = max(TAGS, key=lambda tag: probabilities.get(tag.name, 0.0))
    return best.name, float(probabilities.get(best.name, 0.0))


def decide(probabilities: Mapping[str, float], config: GateConfig, *,
           respelling: bool | Callable[[], bool] = False) -> Decision:
    """Apply the policy to one rewrite's tag probabilities. ``respelling``: whether the rewrite respells the
    query (``widening.is_respelling``), so ``respelling_keep_min`` applies below ``keep_min``; a callable is
    asked only for a rewrite that would otherwise be dropped (most are kept or dropped on the tags alone)."""
    tag, p_top = top_tag(probabilities)
    p_exact = float(probabilities.get("exact", 0.0))
    p_relevant = p_exact + float(probabilities.get("substitute", 0.0))
    if p_exact >= config.full_min:
        return Decision("full", config.full_weight, tag, p_top, f"P(exact)={p_exact:.3f} >= full_min {config.full_min}")
    if p_relevant >= config.keep_min:
        return Decision(
            "down", config.down_weight, tag, p_top,
            f"P(exact)+P(substitute)={p_relevant:.3f} >= keep_min {config.keep_min}",
        )
    if p_relevant >= config.respelling_keep_min and (respelling() if callable(respelling) else respelling):
        return Decision(
            "down", config.down_weight, tag, p_top,
            f"a respelling of the query: P(exact)+P(substitute)={p_relevant:.3f} >= respelling_keep_min "
            f"{config.respelling_keep_min}",
        )
    return Decision(
        "drop", 0.0, tag, p_top,
        f"P(exact)={p_exact:.3f} < full_min {config.full_min} and P(exact)+P(substitute)={p_relevant:.3f} < keep_min {config.keep_min}",
    )


def pinned(weight: float, rule: str) -> Decision:
    """The decision for a merchandiser's pinned rewrite: kept at the rule's weight, no model involved."""
    return Decision("full" if weight >= 1.0 else "down", weight, "exact", 1.0, f"pinned by rule {rule}")
