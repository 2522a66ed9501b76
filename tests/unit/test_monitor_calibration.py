"""Calibration: the fix must improve the metric it exists for, and the metrics must match hand arithmetic."""
import numpy as np
import pytest
from scipy.special import softmax

from monitor import (IsotonicCalibration, PlattScaling, TemperatureScaling, brier_score,
                     expected_calibration_error, reliability_curve, reliability_diagram)


def _overconfident(n=3000, k=5, seed=0):
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(scale=1.5, size=(n, k))
    p = softmax(true_logits, axis=1)
    y = (p.cumsum(1) < rng.random((n, 1))).sum(1)  # labels drawn from the true probabilities
    return true_logits * 4.0, y  # scaled by 4: same argmax, far too confident


def test_temperature_scaling_reduces_ece_and_brier():
    z, y = _overconfident()
    fit_z, fit_y, ev_z, ev_y = z[:1500], y[:1500], z[1500:], y[1500:]
    p0 = softmax(ev_z, axis=1)
    ts = TemperatureScaling().fit(fit_z, fit_y)
    p1 = ts.predict_proba(ev_z)
    assert 3.0 < ts.temperature_ < 5.5  # recovers roughly the factor 4 we injected
    ece0 = expected_calibration_error(p0.max(1), p0.argmax(1) == ev_y)
    ece1 = expected_calibration_error(p1.max(1), p1.argmax(1) == ev_y)
    assert ece1 < ece0 / 3
    assert brier_score(p1, ev_y) < brier_score(p0, ev_y)
    np.testing.assert_array_equal(p0.argmax(1), p1.argmax(1))  # temperature never changes the decision


@pytest.mark.parametrize("cal", [PlattScaling, IsotonicCalibration])
def test_binary_calibrators_reduce_brier(cal):
    rng = np.random.default_rng(1)
    s = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2 * s - 1)))).astype(int)
    raw = 1 / (1 + np.exp(-8 * s))  # a badly scaled "probability"
    m = cal().fit(s[:2000], y[:2000])
    p = m.predict(s[2000:])
    assert brier_score(p, y[2000:]) < brier_score(raw[2000:], y[2000:]) - 0.01
    assert expected_calibration_error(p, y[2000:]) < 0.05


def test_ece_and_brier_hand_arithmetic():
    conf = np.array([0.9, 0.9, 0.1, 0.1])
    corr = np.array([1, 0, 0, 0])
    # two occupied bins: |0.5-0.9|*0.5 + |0-0.1|*0.5
    assert expected_calibration_error(conf, corr, n_bins=10) == pytest.approx(0.25)
    assert brier_score(conf, corr) == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)
    _, _, count = reliability_curve(np.array([1.0, 0.0]), np.array([1, 0]), n_bins=4)
    assert count.tolist() == [1, 0, 0, 1]  # 1.0 lands in the last bin


def test_errors_are_clear():
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        expected_calibration_error([1.2], [1])
    with pytest.raises(ValueError, match="NaN"):
        PlattScaling().fit([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="single class"):
        PlattScaling().fit([0.1, 0.2], [1, 1])
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaling().predict_proba(np.zeros((2, 2)))


def test_reliability_diagram_writes_png(tmp_path):
    z, y = _overconfident(500)
    p = softmax(z, axis=1)
    out = reliability_diagram(p.max(1), p.argmax(1) == y, tmp_path / "rel.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
