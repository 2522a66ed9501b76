"""Threshold derivation, bounds, spec round-trip and the guard: each failure gets a clear error or verdict."""
import json

import numpy as np
import pytest

from cascade.thresholds import (SPEC_FORMAT, ScorerMismatchError, SpecFormatError, ThresholdGuard, ThresholdSpec,
                                UnattainableTargetError, achieved, derive_cost_threshold, derive_threshold)


def _data(n=4000, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = rng.normal(loc=np.where(y == 1, 1.5, 0.0) + shift, scale=1.0)
    return s, y


def _naive_precision_threshold(s, y, target):
    """Slow oracle: try every distinct score, keep those with point precision >= target, take the lowest."""
    best = None
    for t in np.unique(s):
        f = s >= t
        if f.sum() and y[f].mean() >= target:
            best = t if best is None else min(best, t)
    return best


def test_point_precision_threshold_matches_naive_oracle():
    for seed in range(5):
        s, y = _data(300, seed)
        s = np.round(s, 1)  # ties on purpose
        assert derive_threshold(s, y, "precision", 0.8, bound="point") == pytest.approx(
            _naive_precision_threshold(s, y, 0.8))


def test_lower_bound_threshold_holds_on_fresh_data():
    s, y = _data(3000, 1)
    t = derive_threshold(s, y, "precision", 0.75, confidence=0.95)
    t_point = derive_threshold(s, y, "precision", 0.75, bound="point")
    assert t >= t_point  # the bound makes the cutoff more conservative
    s2, y2 = _data(20000, 2)
    assert achieved(s2, y2, t)["precision"] >= 0.75
    r = derive_threshold(s, y, "recall", 0.9)
    assert achieved(s2, y2, r)["recall"] >= 0.9


def test_direction_below_flags_low_scores():
    s, y = _data(2000, 3)
    t_above = derive_threshold(s, y, "recall", 0.9)
    t_below = derive_threshold(-s, y, "recall", 0.9, direction="below")
    assert t_below == pytest.approx(-t_above)


def test_cost_threshold_is_the_expected_cost_minimiser():
    s, y = _data(500, 4)
    t = derive_cost_threshold(s, y, cost_fp=1.0, cost_fn=5.0)
    costs = {u: 1.0 * np.sum((s >= u) & (y == 0)) + 5.0 * np.sum((s < u) & (y == 1)) for u in np.unique(s)}
    assert 1.0 * np.sum((s >= t) & (y == 0)) + 5.0 * np.sum((s < t) & (y == 1)) == min(costs.values())


def test_unattainable_target_says_what_is_achievable():
    rng = np.random.default_rng(5)
    s, y = rng.random(500), (rng.random(500) < 0.2).astype(int)  # scores carry no signal
    with pytest.raises(UnattainableTargetError, match="no threshold reaches precision >= 0.95.*the best is"):
        derive_threshold(s, y, "precision", 0.95)
    with pytest.raises(UnattainableTargetError, match="no positives"):
        derive_threshold(s, np.zeros(500, int), "recall", 0.5)


def test_nan_scores_and_empty_window_raise_clearly():
    s, y = _data(100)
    s[7] = np.nan
    with pytest.raises(ValueError, match="1 NaN.*index 7"):
        derive_threshold(s, y, "precision", 0.8)
    with pytest.raises(ValueError, match="empty window"):
        achieved([], [], 0.5)
    with pytest.raises(ValueError, match="metric must be one of precision, recall"):
        derive_threshold([0.1], [1], "f1", 0.5)


def test_achieved_per_cohort_and_bounds():
    s, y = _data(2000, 6)
    coh = np.where(np.arange(2000) % 2 == 0, "short", "long")
    a = achieved(s, y, 1.0, cohorts=coh, cost=(1.0, 3.0))
    assert set(a["per_cohort"]) == {"short", "long"}
    for m in (a, *a["per_cohort"].values()):
        assert m["precision_lo"] <= m["precision"] <= m["precision_hi"]
        assert m["recall_lo"] <= m["recall"] <= m["recall_hi"]
    assert sum(c["n"] for c in a["per_cohort"].values()) == a["n"]
    assert a["cost_per_item_lo"] <= a["cost_per_item"] <= a["cost_per_item_hi"]


def test_spec_round_trip_gives_identical_behaviour(tmp_path):
    s, y = _data(1500, 7)
    spec = ThresholdSpec.fit(s, y, metric="precision", target=0.8, scorer_fingerprint="abc123", scorer_name="m",
                             task="t", cohorts=np.where(s > 0, "a", "b"))
    loaded = ThresholdSpec.load(spec.save(tmp_path / "spec.json"))
    assert loaded == spec
    live = _data(500, 8)[0]
    np.testing.assert_array_equal(loaded.predict(live), spec.predict(live))
    raw = json.loads((tmp_path / "spec.json").read_text())
    assert raw["format"] == SPEC_FORMAT
    for key in ("scorer_fingerprint", "target", "achieved", "score_quantiles", "data_hash", "created"):
        assert key in raw
    assert raw["achieved"]["precision_lo"] <= raw["achieved"]["precision"]


def test_spec_load_refuses_other_formats(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "ragfix.ThresholdSpec/0", "threshold": 0.5}))
    with pytest.raises(SpecFormatError, match="this code reads"):
        ThresholdSpec.load(p)
    p.write_text("{not json")
    with pytest.raises(SpecFormatError, match="not valid JSON"):
        ThresholdSpec.load(p)


def test_guard_refuses_other_scorer():
    s, y = _data(1000)
    spec = ThresholdSpec.fit(s, y, metric="recall", target=0.8, scorer_fingerprint="model-A")
    with pytest.raises(ScorerMismatchError, match="model-A.*model-B"):
        ThresholdGuard(spec, "model-B")


def test_guard_clean_vs_shifted_scores():
    s, y = _data(3000, 9)
    spec = ThresholdSpec.fit(s, y, metric="precision", target=0.8, scorer_fingerprint="m")
    guard = ThresholdGuard(spec, "m")
    assert not guard.predict(_data(400, 10)[0]).is_drift
    # the same model, rescaled as a logits-instead-of-sigmoid release would be
    r = guard.predict(_data(400, 11)[0] * 3.0 + 2.0)
    assert r.is_drift and r.meta["live_flag_rate"] > r.meta["spec_flag_rate"]
    assert guard.score(_data(400, 12)[0] * 3.0 + 2.0) > 0.3


def test_guard_nan_empty_and_tiny_windows():
    s, y = _data(500)
    guard = ThresholdGuard(ThresholdSpec.fit(s, y, metric="recall", target=0.8, scorer_fingerprint="m"), "m")
    with pytest.raises(ValueError, match="empty window"):
        guard.predict([])
    with pytest.raises(ValueError, match="min_window"):
        guard.predict([0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        guard.predict(np.r_[np.zeros(50), np.nan])
