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
    ci = stats.binomtest(k, n).proportion_ci(confidence, method="exact")  # Clopper-Pearson
    return Interval(k / n, float(ci.low), float(ci.high), confidence, n)


def bootstrap_interval(values: np.ndarray, statistic=np.mean, confidence: float = 0.95,
                       n_boot: int = 2000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic(values)`` (rows resampled with replacement; ``scipy.stats.bootstrap``)."""
    _check_conf(confidence)
    values = np.asarray(values)
    if values.shape[0] == 0:
        return Interval(math.nan, math.nan, math.nan, confidence, 0)
    # scipy resamples row indices, so rows of a 2-D array (paired measurements) stay together
    res = stats.bootstrap((np.arange(values.shape[0]),), lambda i: statistic(values[i]), vectorized=False,
                          n_resamples=n_boot, confidence_level=confidence, method="percentile",
                          random_state=np.random.default_rng(seed))
    return Interval(float(statistic(values)), float(res.confidence_interval.low), float(res.confidence_interval.high),
                    confidence, int(values.shape[0]))
