"""Paired statistics on per-window log-losses.

The primary metric is the perplexity ratio subject/baseline = exp(token-weighted mean of the
per-window difference in mean NLL). Windows are the unit of resampling: the same windows were
scored by both models, so the bootstrap resamples window indices and keeps each pair together.
The BCa interval follows Efron & Tibshirani (1993) 14.3 with the jackknife acceleration, using the
same conventions as scipy.stats.bootstrap (ties count half in z0, linear percentile interpolation)
so the two agree on the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from invarlock_provider.errors import BadInputError

_NORMAL = NormalDist()
_RESAMPLE_CHUNK = 512
# Window draws of one interval (replicates x windows): verify and every page view redo them, so
# a policy or a report cannot ask for more than about a second of work (3,200 x 10,000 windows fits).
MAX_BOOTSTRAP_DRAWS = 50_000_000


@dataclass(frozen=True)
class RatioInterval:
    ratio: float
    low: float
    high: float
    confidence: float
    replicates: int
    seed: int
    z0: float
    acceleration: float


def log_ratio(delta: np.ndarray, weights: np.ndarray) -> float:
    """Token-weighted mean of the per-window NLL differences (natural log of the ppl ratio)."""
    return float(np.dot(weights, delta) / weights.sum())


def ppl_ratio(delta: np.ndarray, weights: np.ndarray) -> float:
    return math.exp(log_ratio(delta, weights))


def bootstrap_ratios(delta: np.ndarray, weights: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """Ratio of each paired bootstrap resample; vectorised in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    n = len(delta)
    weighted = weights * delta
    out = np.empty(replicates)
    for start in range(0, replicates, _RESAMPLE_CHUNK):
        stop = min(start + _RESAMPLE_CHUNK, replicates)
        index = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = weighted[index].sum(axis=1) / weights[index].sum(axis=1)
    return np.exp(out)


def jackknife_ratios(delta: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Leave-one-window-out ratios in O(n)."""
    total_weighted = float(np.dot(weights, delta))
    total_weight = float(weights.sum())
    return np.exp((total_weighted - weights * delta) / (total_weight - weights))


def bca_interval(
    delta: np.ndarray, weights: np.ndarray, *, replicates: int, confidence: float, seed: int
) -> RatioInterval:
    if replicates * len(delta) > MAX_BOOTSTRAP_DRAWS:
        raise BadInputError(
            f"bootstrap of {replicates} replicates over {len(delta)} windows is more than the "
            f"{MAX_BOOTSTRAP_DRAWS} draws an interval may take; lower bootstrap.replicates"
        )
    delta = np.asarray(delta, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    theta = ppl_ratio(delta, weights)
    boot = bootstrap_ratios(delta, weights, replicates, seed)
    below = np.count_nonzero(boot < theta) + np.count_nonzero(boot <= theta)
    z0 = _NORMAL.inv_cdf(min(max(below / (2 * replicates), 1e-12), 1 - 1e-12))
    jack = jackknife_ratios(delta, weights)
    n = len(jack)
    u = (n - 1) * (jack.mean() - jack)
    denominator = float(np.sum(u**2) / n**2) ** 1.5
    acceleration = float(np.sum(u**3) / n**3) / (6 * denominator) if denominator > 0 else 0.0
    alpha = (1 - confidence) / 2
    bounds = []
    for z_alpha in (_NORMAL.inv_cdf(alpha), _NORMAL.inv_cdf(1 - alpha)):
        shifted = z0 + z_alpha
        bounds.append(_NORMAL.cdf(z0 + shifted / (1 - acceleration * shifted)))
    low, high = np.percentile(boot, [100 * bounds[0], 100 * bounds[1]])
    return RatioInterval(
        ratio=theta,
        low=float(low),
        high=float(high),
        confidence=confidence,
        replicates=replicates,
        seed=seed,
        z0=z0,
        acceleration=acceleration,
    )


def quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))
