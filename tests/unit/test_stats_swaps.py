"""The scipy.stats swaps (issue 14) give what the hand-written versions gave: checked against them as oracles."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bench.benchmarks.bench_retrieval import paired_randomization_p
from monitor.bounds import bootstrap_interval, clopper_pearson


def _old_cp(k, n, conf=0.95):
    a = (1 - conf) / 2
    lo = 0.0 if k == 0 else stats.beta.ppf(a, k, n - k + 1)
    hi = 1.0 if k == n else stats.beta.ppf(1 - a, k + 1, n - k)
    return lo, hi


def _old_boot(values, statistic=np.mean, conf=0.95, n_boot=2000, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.shape[0], size=(n_boot, values.shape[0]))
    boots = np.array([statistic(values[i]) for i in idx])
    a = (1 - conf) / 2
    return np.quantile(boots, a), np.quantile(boots, 1 - a)


def _old_perm(a, b, n_perm=10000, seed=0):
    d = a - b
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return (np.sum(null >= abs(d.mean()) - 1e-12) + 1) / (n_perm + 1)


def test_clopper_pearson_matches_the_beta_quantiles_everywhere():
    for n in (1, 2, 7, 30, 333):
        for k in range(0, n + 1, max(1, n // 9)):
            for conf in (0.9, 0.95, 0.99):
                got = clopper_pearson(k, n, conf)
                np.testing.assert_allclose((got.lower, got.upper), _old_cp(k, n, conf), atol=1e-9)


def test_bootstrap_matches_the_old_percentile_bootstrap_within_monte_carlo_error():
    rng = np.random.default_rng(1)
    for values in (rng.normal(0.1, 1.0, 300), rng.binomial(1, 0.3, 150).astype(float), rng.normal(size=(200, 2))):
        stat = (lambda v: float(np.mean(v[:, 0] - v[:, 1]))) if values.ndim == 2 else np.mean
        new = bootstrap_interval(values, stat, n_boot=4000)
        lo, hi = _old_boot(values, stat, n_boot=4000)
        width = hi - lo
        assert abs(new.lower - lo) < 0.06 * width and abs(new.upper - hi) < 0.06 * width, (new, lo, hi)


def test_permutation_p_matches_the_old_sign_flip_test():
    rng = np.random.default_rng(2)
    for shift in (0.0, 0.05, 0.15):
        a = rng.uniform(size=120)
        b = np.clip(a - shift + rng.normal(0, 0.2, 120), 0, 1)
        new, old = paired_randomization_p(a, b), _old_perm(a, b)
        assert new == pytest.approx(old, abs=0.02 + 0.1 * old), (shift, new, old)
    assert paired_randomization_p(np.ones(5), np.ones(5)) == 1.0


def test_sklearn_brier_and_balanced_accuracy_match_hand_arithmetic():
    from cascade.faithfulness import balanced_accuracy
    from monitor.calibration import brier_score

    rng = np.random.default_rng(3)
    p, y = rng.uniform(size=500), rng.integers(0, 2, 500)
    assert brier_score(p, y) == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)
    pred = rng.integers(0, 2, 500)
    by_hand = np.mean([np.mean(pred[y == c] == c) for c in (0, 1)])
    assert balanced_accuracy(y, pred) == pytest.approx(by_hand, abs=1e-12)
