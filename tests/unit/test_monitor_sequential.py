"""Bernoulli CUSUM: silent in control, fires out of control, false-alarm rate within its documented bound."""
import math

import numpy as np
import pytest

from monitor import BernoulliCUSUM, clopper_pearson, false_alarm_rate


def test_threshold_from_horizon_and_alpha():
    c = BernoulliCUSUM(0.05, 0.1, horizon=2000, alpha=0.05)
    assert c.threshold == pytest.approx(math.log(2000 / 0.05))


def test_clean_vs_shifted_stream():
    rng = np.random.default_rng(0)
    c = BernoulliCUSUM(0.05, 0.15, horizon=2000, alpha=0.05)
    assert not c.update(rng.random(2000) < 0.03).is_alarm
    c.reset()
    r = c.update(rng.random(2000) < 0.25)
    assert r.is_alarm and r.alarm_at < 400


def test_measured_false_alarm_rate_within_documented_bound():
    n, alpha = 1000, 0.05
    make = lambda: BernoulliCUSUM(0.05, 0.10, horizon=n, alpha=alpha)
    rate, runs = false_alarm_rate(make, rate=0.05, n=n, runs=400, seed=1)
    # documented guarantee: <= alpha at the worst in-control rate p = p0; use the CP lower bound
    assert clopper_pearson(round(rate * runs), runs).lower <= alpha
    # and it is not vacuous: at 3 x p0 almost every run alarms
    power, _ = false_alarm_rate(make, rate=0.15, n=n, runs=100, seed=2)
    assert power > 0.95


def test_alarm_latches_until_reset_and_validates():
    c = BernoulliCUSUM(0.1, 0.3, threshold=2.0)
    r = c.update([1, 1, 1, 1])
    assert r.is_alarm
    assert c.update([0] * 50).is_alarm and c.result().alarm_at == r.alarm_at
    c.reset()
    assert not c.result().is_alarm
    with pytest.raises(ValueError, match="0/1"):
        c.update([2])
    with pytest.raises(ValueError, match="p0 < p1"):
        BernoulliCUSUM(0.2, 0.1, threshold=1.0)


def test_clopper_pearson_hand_values():
    iv = clopper_pearson(0, 10)
    assert iv.lower == 0.0 and iv.upper == pytest.approx(1 - 0.025 ** (1 / 10))
    assert math.isnan(clopper_pearson(0, 0).estimate)
