"""Paired statistics on small hand-made cases."""

import pytest

from qrw.eval.stats import bootstrap_ci, harm_rate, randomization_test, win_rate


def test_harm_and_win_rates():
    baseline = [0.5, 0.5, 0.5, 0.5]
    system = [0.40, 0.46, 0.60, 0.5]  # -0.10 harmed, -0.04 within margin, +0.10 won, 0 tie
    assert harm_rate(system, baseline) == 0.25
    assert win_rate(system, baseline) == 0.25


def test_identical_systems_are_not_significant():
    assert randomization_test([0.3, 0.4], [0.3, 0.4]) == 1.0


def test_consistent_gain_is_significant_and_ci_excludes_zero():
    baseline = [0.2 + 0.01 * i for i in range(30)]
    system = [b + 0.1 for b in baseline]
    assert randomization_test(system, baseline, trials=2000) < 0.01
    low, high = bootstrap_ci(system, baseline, trials=2000)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_noise_is_not_significant():
    baseline = [0.5] * 10
    system = [0.6, 0.4] * 5  # mean delta exactly 0
    assert randomization_test(system, baseline, trials=2000) > 0.5
    low, high = bootstrap_ci(system, baseline, trials=2000)
    assert low < 0 < high
