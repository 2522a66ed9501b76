"""Confidence bounds for proportions: the arithmetic every threshold and audit claim rests on.

A threshold "meets precision 0.9" only says something when it comes with how many items the 0.9
was measured on. Clopper-Pearson (exact, conservative) is used throughout because its coverage is
guaranteed at every n, including the small per-cohort counts where normal approximations lie.
Leaves out: Wilson/Jeffreys intervals and weighted (importance-sampled) proportions.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from monitor.types import Interval

__all__ = ["clopper_pearson", "bootstrap_interval"]


def _check_conf(confidence: float) -> None:
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Exact two-sided interval for a binomial proportion ``k / n``.

    With ``n == 0`` the estimate is ``nan`` and the interval the uninformative ``[0, 1]``.

    >>> round(clopper_pearson(9, 10).lower, 3)
    0.555
    """
    _check_conf(confidence)
    k, n = int(k), int(n)
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Interval(math.nan, 0.0, 1.0, confidence, 0)
    a = (1.0 - confidence) / 2.0
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - a, k + 1, n - k))
    return Interval(k / n, lo, hi, confidence, n)


def bootstrap_interval(values: np.ndarray, statistic=np.mean, confidence: float = 0.95,
                       n_boot: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic(values)`` (rows resampled with replacement)."""
    _check_conf(confidence)
    values = np.asarray(values)
    if values.shape[0] == 0:
        return Interval(math.nan, math.nan, math.nan, confidence, 0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.shape[0], size=(n_boot, values.shape[0]))
    boots = np.array([statistic(values[i]) for i in idx])
    a = (1.0 - confidence) / 2.0
    return Interval(float(statistic(values)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)),
                    confidence, int(values.shape[0]))
