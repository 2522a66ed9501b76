"""Every drift detector: silent on a clean window, fires on a shifted one; errors on NaN and empty windows."""
import numpy as np
import pytest

from monitor import KSDrift, MMDDrift, PSIDrift


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_ks_clean_vs_shifted(rng):
    det = KSDrift(rng.normal(size=2000), p_val=0.01)
    assert not det.predict(rng.normal(size=300)).is_drift
    r = det.predict(rng.normal(0.4, 1.0, size=300))
    assert r.is_drift and r.p_val < 0.01 and r.statistic > 0.1


def test_ks_from_quantiles_clean_vs_shifted(rng):
    ref = rng.beta(2, 5, size=5000)
    probs = np.linspace(0, 1, 101)
    det = KSDrift.from_quantiles(np.quantile(ref, probs), probs)
    assert not det.predict(rng.beta(2, 5, size=500)).is_drift
    assert det.predict(rng.beta(5, 2, size=50)).is_drift
    # agrees with the two-sample test on the same data (same verdicts, close statistics)
    x = rng.beta(2, 4, size=400)
    assert abs(det.score(x) - KSDrift(ref).score(x)) < 0.02


def test_ks_false_alarm_rate_near_level(rng):
    ref = rng.normal(size=3000)
    det = KSDrift(ref, p_val=0.05)
    fired = np.mean([det.predict(rng.normal(size=200)).is_drift for _ in range(200)])
    assert fired < 0.12


def test_mmd_clean_vs_shifted(rng):
    ref = rng.normal(size=(150, 8))
    det = MMDDrift(ref, p_val=0.05, n_permutations=100)
    assert not det.predict(rng.normal(size=(100, 8))).is_drift
    shifted = rng.normal(size=(100, 8))
    shifted[:, 0] += 1.0
    r = det.predict(shifted)
    assert r.is_drift and r.p_val <= 0.02


def test_psi_clean_vs_shifted(rng):
    det = PSIDrift(rng.normal(size=5000))
    assert det.score(rng.normal(size=1000)) < 0.05
    assert det.predict(rng.normal(1.0, 1.0, size=1000)).is_drift


def test_psi_from_quantiles_matches_sample_version(rng):
    ref = rng.gamma(2.0, size=5000)
    probs = np.linspace(0, 1, 101)
    a = PSIDrift(ref)
    b = PSIDrift.from_quantiles(np.quantile(ref, probs), probs)
    x = rng.gamma(2.5, size=800)
    assert b.score(x) == pytest.approx(a.score(x), abs=0.02)


@pytest.mark.parametrize("make", [lambda r: KSDrift(r), lambda r: MMDDrift(r[:, None]), lambda r: PSIDrift(r)])
def test_nan_and_empty_windows_raise(rng, make):
    det = make(rng.normal(size=100))
    with pytest.raises(ValueError, match="NaN"):
        det.predict(np.array([0.1, np.nan, 0.3]))
    with pytest.raises(ValueError, match="empty window"):
        det.predict(np.array([]))
