"""Paired comparisons of a system against ``original``: harm/win rates, randomisation test, bootstrap CI.

Why both a test and an interval: with ~20-90 queries a p-value alone hides the size of an effect;
the bootstrap interval of the mean delta shows it. Both are seeded, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HARM_MARGIN = 0.05
"""A query is harmed when its nDCG@10 falls more than this below ``original`` (and won when it rises more)."""


def harm_rate(system: Sequence[float], baseline: Sequence[float], margin: float = HARM_MARGIN) -> float:
    deltas = np.asarray(system) - np.asarray(baseline)
    return float(np.mean(deltas < -margin)) if len(deltas) else 0.0


def win_rate(system: Sequence[float], baseline: Sequence[float], margin: float = HARM_MARGIN) -> float:
    deltas = np.asarray(system) - np.asarray(baseline)
    return float(np.mean(deltas > margin)) if len(deltas) else 0.0


def randomization_test(system: Sequence[float], baseline: Sequence[float], *, trials: int = 10000, seed: int = 0) -> float:
    """Two-sided paired sign-flip randomisation test of the mean difference; returns the p-value."""
    deltas = np.asarray(system, dtype=float) - np.asarray(baseline, dtype=float)
    if len(deltas) == 0 or np.allclose(deltas, 0):
        return 1.0
    observed = abs(deltas.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(trials, len(deltas)))
    permuted = np.abs((signs * deltas).mean(axis=1))
    return float((np.sum(permuted >= observed - 1e-12) + 1) / (trials + 1))


def bootstrap_ci(system: Sequence[float], baseline: Sequence[float], *, trials: int = 10000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference."""
    deltas = np.asarray(system, dtype=float) - np.asarray(baseline, dtype=float)
    if len(deltas) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, len(deltas), size=(trials, len(deltas)))
    means = deltas[samples].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0
