"""Small result values shared by every detector and alarm in ``monitor`` (and by ``cascade``)."""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["DriftResult", "AlarmResult", "Interval"]


class DriftResult(NamedTuple):
    """One flat verdict of a two-sample detector (alibi-detect's shape).

    is_drift:  True when the detector fires (``p_val < threshold``, or ``distance > threshold`` for PSI)
    statistic: the test statistic (KS D, MMD^2, PSI)
    p_val:     p-value of "same distribution" (``nan`` where the test has none, e.g. PSI)
    threshold: the significance level or distance cutoff the verdict used
    meta:      detector name, sample sizes, anything else worth logging
    """

    is_drift: bool
    statistic: float
    p_val: float
    threshold: float
    meta: dict[str, Any]


class AlarmResult(NamedTuple):
    """State of a sequential alarm after the observations seen so far.

    is_alarm:  True once the statistic has crossed ``threshold`` (it stays True until ``reset``)
    statistic: the current statistic (e.g. the CUSUM log-likelihood-ratio sum)
    threshold: the crossing level
    n_seen:    observations consumed since the last reset
    alarm_at:  1-based index of the observation that raised the alarm, or None
    meta:      parameters, for logging
    """

    is_alarm: bool
    statistic: float
    threshold: float
    n_seen: int
    alarm_at: int | None
    meta: dict[str, Any]


class Interval(NamedTuple):
    """A point estimate with a two-sided interval at ``confidence``; ``n`` is the sample size."""

    estimate: float
    lower: float
    upper: float
    confidence: float
    n: int
