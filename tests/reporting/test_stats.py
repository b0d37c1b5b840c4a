from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from invarlock_provider.reporting.stats import bca_interval, jackknife_ratios, ppl_ratio


def skewed_deltas(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-skewed per-window changes with unequal token counts: BCa differs from percentile here."""
    rng = np.random.default_rng(seed)
    return rng.gamma(shape=1.5, scale=0.08, size=n) - 0.05, rng.integers(60, 128, size=n).astype(float)


def scipy_bca(delta: np.ndarray, weights: np.ndarray, replicates: int) -> tuple[float, float]:
    def statistic(d: np.ndarray, w: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.exp((d * w).sum(axis=axis) / w.sum(axis=axis))

    result = scipy_stats.bootstrap(
        (delta, weights),
        statistic,
        paired=True,
        vectorized=True,
        method="BCa",
        n_resamples=replicates,
        confidence_level=0.95,
        random_state=np.random.default_rng(7),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@pytest.mark.parametrize(("n", "seed"), [(60, 1), (200, 2), (400, 3)])
def test_bca_agrees_with_scipy(n: int, seed: int) -> None:
    delta, weights = skewed_deltas(n, seed)
    ours = bca_interval(delta, weights, replicates=20000, confidence=0.95, seed=11)
    low, high = scipy_bca(delta, weights, 20000)
    assert abs(ours.low - low) < 1e-3
    assert abs(ours.high - high) < 1e-3
    assert ours.low < ours.ratio < ours.high


def test_the_scipy_check_can_tell_bca_from_percentile() -> None:
    """Guard against a vacuous comparison: on strongly skewed data, BCa stays within 1e-3 of scipy
    while the plain percentile interval of the same resamples is further off than that."""
    rng = np.random.default_rng(1)
    delta = rng.gamma(shape=0.8, scale=0.1, size=150) - 0.05
    weights = rng.integers(60, 128, size=150).astype(float)
    ours = bca_interval(delta, weights, replicates=50000, confidence=0.95, seed=11)
    low, high = scipy_bca(delta, weights, 50000)
    assert max(abs(ours.low - low), abs(ours.high - high)) < 1e-3
    index = np.random.default_rng(11).integers(0, len(delta), size=(50000, len(delta)))
    boot = np.exp((delta[index] * weights[index]).sum(1) / weights[index].sum(1))
    percentile_low, percentile_high = np.percentile(boot, [2.5, 97.5])
    assert max(abs(percentile_low - low), abs(percentile_high - high)) > 1e-3


def test_ratio_is_token_weighted() -> None:
    delta = np.array([0.0, 1.0])
    weights = np.array([3.0, 1.0])
    assert ppl_ratio(delta, weights) == pytest.approx(math.exp(0.25))


def test_jackknife_matches_explicit_leave_one_out() -> None:
    delta, weights = skewed_deltas(30, 4)
    explicit = [ppl_ratio(np.delete(delta, i), np.delete(weights, i)) for i in range(30)]
    assert jackknife_ratios(delta, weights) == pytest.approx(explicit, rel=1e-12)


def test_identical_runs_give_a_degenerate_interval_at_one() -> None:
    interval = bca_interval(np.zeros(50), np.full(50, 127.0), replicates=1000, confidence=0.95, seed=0)
    assert (interval.ratio, interval.low, interval.high) == (1.0, 1.0, 1.0)


def test_bootstrap_is_seeded() -> None:
    delta, weights = skewed_deltas(100, 5)
    first = bca_interval(delta, weights, replicates=2000, confidence=0.95, seed=3)
    again = bca_interval(delta, weights, replicates=2000, confidence=0.95, seed=3)
    other = bca_interval(delta, weights, replicates=2000, confidence=0.95, seed=4)
    assert first == again
    assert first.low != other.low
