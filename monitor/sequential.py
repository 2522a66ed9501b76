"""Sequential alarms: watch a stream of 0/1 outcomes and raise an alarm soon after its rate rises.

Failure modes served: Cascade Saturation (X) -- the audited pass-through errors of a cascade
arrive one at a time, and waiting for a fixed-size batch wastes the requests in between -- and,
later, Distillation Drift (IX). Mechanism: Bernoulli CUSUM (Page, 1954) on the log-likelihood
ratio of an out-of-control rate ``p1`` against the in-control rate ``p0``:
``S_t = max(0, S_{t-1} + llr(x_t))``, alarm when ``S_t >= h``.

False-alarm rate, documented and measured. CUSUM alarms by step ``n`` only if, for some start
``k <= n``, the SPRT started at ``k`` crosses ``h``; under any rate ``p <= p0`` each of those is a
non-negative supermartingale, so by Ville's inequality crosses with probability ``<= e^-h``.
A union over starts gives ``P(false alarm within n) <= n e^-h``; so ``h = ln(n / alpha)``
(``BernoulliCUSUM(p0, p1, horizon=n, alpha=alpha)``) guarantees a false-alarm rate of at most
``alpha`` over ``n`` observations. The bound is loose; :func:`false_alarm_rate` measures the true
rate by seeded simulation -- at the worst in-control rate ``p = p0``, ``n = 1000``, ``alpha = 0.05``:
0.0015 for ``(p0, p1) = (0.05, 0.10)`` and 0.0005 for ``(0.02, 0.06)`` (2,000 runs each, seed 0) --
and ``tests/unit/test_monitor_sequential.py`` checks both, plus a clean/shifted pair.
``ragfix bench cascade`` reports the measured rate on real traffic (0 of 30 CLINC150 streams).

Leaves out: two-sided CUSUM, EWMA charts, betting confidence sequences.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from monitor.types import AlarmResult

__all__ = ["BernoulliCUSUM", "false_alarm_rate"]


class BernoulliCUSUM:
    """One-sided Bernoulli CUSUM: alarms when the rate of 1s rises from ``p0`` towards ``p1``.

    Args:
        p0: in-control rate (e.g. the cascade's pass-through error budget).
        p1: out-of-control rate the alarm is tuned to catch quickly (> p0; e.g. 2 * p0).
        threshold: the crossing level ``h``; give it, or give ``horizon`` and ``alpha``.
        horizon, alpha: pick ``h = ln(horizon / alpha)`` so ``P(false alarm within horizon) <= alpha``.

    ``update(x)`` consumes one 0/1 or an iterable of them and returns :class:`AlarmResult`;
    after an alarm the state stays alarmed until ``reset()``.

    >>> c = BernoulliCUSUM(0.05, 0.15, horizon=1000, alpha=0.05)
    >>> c.update([0] * 200).is_alarm, c.update([1] * 10).is_alarm
    (False, True)
    """

    def __init__(self, p0: float, p1: float, threshold: float | None = None, horizon: int | None = None,
                 alpha: float | None = None) -> None:
        if not (0.0 < p0 < p1 < 1.0):
            raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")
        if threshold is None:
            if horizon is None or alpha is None:
                raise ValueError("give threshold, or both horizon (observations) and alpha (false-alarm rate)")
            if horizon < 1 or not (0.0 < alpha < 1.0):
                raise ValueError(f"need horizon >= 1 and 0 < alpha < 1, got horizon={horizon}, alpha={alpha}")
            threshold = math.log(horizon / alpha)
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.p0, self.p1, self.threshold = p0, p1, float(threshold)
        self.horizon, self.alpha = horizon, alpha
        self._up = math.log(p1 / p0)
        self._down = math.log((1.0 - p1) / (1.0 - p0))
        self.reset()

    def reset(self) -> None:
        self.statistic_ = 0.0
        self.n_seen_ = 0
        self.alarm_at_: int | None = None

    def update(self, x: int | bool | Iterable) -> AlarmResult:
        xs = np.atleast_1d(np.asarray(x))
        if xs.size and not np.all((xs == 0) | (xs == 1)):
            raise ValueError("BernoulliCUSUM.update takes 0/1 outcomes (1 = an error / the event watched)")
        for v in xs:
            self.n_seen_ += 1
            self.statistic_ = max(0.0, self.statistic_ + (self._up if v else self._down))
            if self.alarm_at_ is None and self.statistic_ >= self.threshold:
                self.alarm_at_ = self.n_seen_
        return self.result()

    def result(self) -> AlarmResult:
        return AlarmResult(self.alarm_at_ is not None, self.statistic_, self.threshold, self.n_seen_, self.alarm_at_,
                           {"alarm": "bernoulli_cusum", "p0": self.p0, "p1": self.p1, "horizon": self.horizon,
                            "alpha": self.alpha})


def false_alarm_rate(make_alarm: Callable[[], BernoulliCUSUM], rate: float, n: int, runs: int = 1000,
                     seed: int = 0) -> tuple[float, int]:
    """Measured share of ``runs`` seeded i.i.d. Bernoulli(``rate``) streams of length ``n`` that alarm.

    Returns ``(rate_of_runs_that_alarmed, runs)``. Use ``rate = p0`` for the worst in-control case.
    """
    if not (0.0 <= rate <= 1.0) or n < 1 or runs < 1:
        raise ValueError(f"need 0 <= rate <= 1, n >= 1, runs >= 1; got rate={rate}, n={n}, runs={runs}")
    rng = np.random.default_rng(seed)
    fired = 0
    for _ in range(runs):
        a = make_alarm()
        fired += a.update(rng.random(n) < rate).is_alarm
    return fired / runs, runs
