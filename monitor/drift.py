"""Two-sample drift tests: is this window of scores (or embeddings) from the reference distribution?

Failure modes served: Threshold by Feel (III) -- a threshold set on one score distribution is
meaningless on another, so :class:`cascade.thresholds.ThresholdGuard` runs these against the
score quantiles saved in the spec -- and, later, Eval Drift (I) and Distillation Drift (IX).
Mechanism: three classic tests behind one detector shape (alibi-detect's): the reference is
given at construction, ``score(x)`` returns the statistic, ``predict(x)`` a flat
:class:`~monitor.types.DriftResult`.

* :class:`KSDrift` -- Kolmogorov-Smirnov, 1-D (per feature with Bonferroni for 2-D input);
  ``KSDrift.from_quantiles`` runs the one-sample test against a CDF rebuilt from saved quantiles.
* :class:`MMDDrift` -- maximum mean discrepancy with an RBF kernel (median-heuristic bandwidth)
  and a permutation p-value (Gretton et al., JMLR 2012); works on embeddings.
* :class:`PSIDrift` -- population stability index over reference-quantile bins; a distance with
  the industry rule of thumb (0.1 watch, 0.25 act) rather than a p-value.

Proved by the clean/shifted pairs in ``tests/unit/test_monitor_drift.py`` and by
``ragfix bench thresholds`` (``guard_fired_on_swap``). Leaves out: learned-kernel MMD,
classifier two-sample tests, multivariate PSI.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from monitor.types import DriftResult

__all__ = ["KSDrift", "MMDDrift", "PSIDrift"]


def _window(x, name: str = "x", ndim: tuple[int, ...] = (1, 2)) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is an empty window; a drift test needs at least one observation")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite values; a drift test cannot rank them -- "
                         "find where they come from (a broken scorer?) rather than dropping them silently")
    return a


def _check_alpha(p_val: float) -> None:
    if not (0.0 < p_val < 1.0):
        raise ValueError(f"p_val (significance level) must be in (0, 1), got {p_val}")


class KSDrift:
    """Kolmogorov-Smirnov drift detector.

    Args:
        reference: ``(n,)`` or ``(n, d)`` reference sample.
        p_val: significance level; fires when the (Bonferroni-corrected) p-value is below it.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> KSDrift(rng.normal(size=500)).predict(rng.normal(1.0, size=200)).is_drift
    True
    """

    def __init__(self, reference, p_val: float = 0.01) -> None:
        _check_alpha(p_val)
        self.reference = _window(reference, "reference")
        self.p_val = p_val
        self._cdf = None

    @classmethod
    def from_quantiles(cls, quantiles, probs, p_val: float = 0.01) -> "KSDrift":
        """One-sample KS against the piecewise-linear CDF through ``(quantiles[i], probs[i])``.

        ``probs`` must run from 0 to 1 (min and max of the reference) and increase.
        """
        q = _window(quantiles, "quantiles", (1,))
        pr = _window(probs, "probs", (1,))
        if q.shape != pr.shape or q.size < 2:
            raise ValueError("quantiles and probs must be 1-D of the same length >= 2")
        if pr[0] != 0.0 or pr[-1] != 1.0 or np.any(np.diff(pr) <= 0) or np.any(np.diff(q) < 0):
            raise ValueError("probs must increase from 0 to 1 and quantiles must be non-decreasing")
        self = cls.__new__(cls)
        _check_alpha(p_val)
        self.p_val = p_val
        self.reference = None
        # subtle: flat stretches in q (ties) make np.interp pick the right-most prob, i.e. the CDF's jump.
        self._cdf = lambda x: np.interp(x, q, pr, left=0.0, right=1.0)
        self._n_ref = None
        return self

    def _tests(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._cdf is not None:
            if x.ndim != 1:
                raise ValueError("a quantile-built KSDrift takes a 1-D window")
            r = stats.kstest(x, self._cdf)
            return np.array([r.statistic]), np.array([r.pvalue])
        ref = self.reference
        if x.ndim != ref.ndim or (x.ndim == 2 and x.shape[1] != ref.shape[1]):
            raise ValueError(f"window shape {x.shape} does not match reference shape {ref.shape}")
        if x.ndim == 1:
            r = stats.ks_2samp(ref, x)
            return np.array([r.statistic]), np.array([r.pvalue])
        rs = [stats.ks_2samp(ref[:, j], x[:, j]) for j in range(x.shape[1])]
        return np.array([r.statistic for r in rs]), np.array([r.pvalue for r in rs])

    def score(self, x) -> float:
        """The KS statistic D (max over features)."""
        d, _ = self._tests(_window(x))
        return float(d.max())

    def predict(self, x) -> DriftResult:
        xw = _window(x)
        d, p = self._tests(xw)
        p_min = float(min(1.0, p.min() * p.size))  # Bonferroni over features
        return DriftResult(p_min < self.p_val, float(d.max()), p_min, self.p_val,
                           {"detector": "ks", "n_window": int(xw.shape[0]), "n_features": int(p.size),
                            "n_reference": None if self.reference is None else int(self.reference.shape[0])})


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


class MMDDrift:
    """MMD^2 (unbiased) with an RBF kernel and a permutation p-value.

    Args:
        reference: ``(n, d)`` (or ``(n,)``) reference sample.
        p_val: significance level.
        n_permutations: permutations for the p-value; p is ``(1 + #{perm >= obs}) / (1 + n_perm)``.
        sigma: kernel bandwidth; default the median pairwise distance of the reference.
        seed: permutation RNG seed (results are reproducible).

    Cost is O((n + m)^2 d) once for the kernel matrix, then O((n + m)^2) per permutation.
    """

    def __init__(self, reference, p_val: float = 0.05, n_permutations: int = 200, sigma: float | None = None,
                 seed: int = 0) -> None:
        _check_alpha(p_val)
        if n_permutations < 1:
            raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
        ref = _window(reference, "reference")
        self.reference = ref[:, None] if ref.ndim == 1 else ref
        if self.reference.shape[0] < 2:
            raise ValueError("MMDDrift needs a reference of at least 2 observations")
        self.p_val, self.n_permutations, self.seed = p_val, n_permutations, seed
        if sigma is None:
            d = np.sqrt(_sqdist(self.reference, self.reference))
            sigma = float(np.median(d[np.triu_indices_from(d, k=1)]))
        if not sigma > 0:
            raise ValueError(f"kernel bandwidth sigma must be > 0, got {sigma} (is the reference constant?)")
        self.sigma = float(sigma)

    @staticmethod
    def _mmd2(k: np.ndarray, n: int) -> float:
        kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
        m = k.shape[0] - n
        sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        return float(sxx + syy - 2.0 * kxy.mean())

    def _prep(self, x) -> tuple[np.ndarray, int]:
        xw = _window(x)
        xw = xw[:, None] if xw.ndim == 1 else xw
        if xw.shape[1] != self.reference.shape[1]:
            raise ValueError(f"window has {xw.shape[1]} features, reference has {self.reference.shape[1]}")
        if xw.shape[0] < 2:
            raise ValueError("MMDDrift needs a window of at least 2 observations")
        z = np.vstack([self.reference, xw])
        return np.exp(-_sqdist(z, z) / (2.0 * self.sigma**2)), self.reference.shape[0]

    def score(self, x) -> float:
        k, n = self._prep(x)
        return self._mmd2(k, n)

    def predict(self, x) -> DriftResult:
        k, n = self._prep(x)
        obs = self._mmd2(k, n)
        rng = np.random.default_rng(self.seed)
        hits = 0
        for _ in range(self.n_permutations):
            perm = rng.permutation(k.shape[0])
            hits += self._mmd2(k[np.ix_(perm, perm)], n) >= obs
        p = (1 + hits) / (1 + self.n_permutations)
        return DriftResult(p < self.p_val, obs, float(p), self.p_val,
                           {"detector": "mmd", "sigma": self.sigma, "n_reference": n, "n_window": k.shape[0] - n,
                            "n_permutations": self.n_permutations})


class PSIDrift:
    """Population stability index over ``n_bins`` reference-quantile bins.

    PSI = sum_b (w_b - r_b) ln(w_b / r_b), with ``eps`` added to empty bins. Fires when PSI >
    ``threshold`` (default 0.25, the customary "significant shift"). On a clean window of ``m``
    observations PSI is about ``(n_bins - 1) / m`` by sampling noise alone, so keep windows to
    a few hundred observations or raise the threshold for small ones.
    """

    def __init__(self, reference=None, n_bins: int = 10, threshold: float = 0.25, eps: float = 1e-4) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.n_bins, self.threshold, self.eps = n_bins, threshold, eps
        if reference is not None:
            ref = _window(reference, "reference", (1,))
            self.edges = np.quantile(ref, np.linspace(0, 1, n_bins + 1))[1:-1]
            self.ref_props = self._props(ref)

    @classmethod
    def from_quantiles(cls, quantiles, probs, n_bins: int = 10, threshold: float = 0.25) -> "PSIDrift":
        """Bins at the reference's ``1/n_bins`` quantiles, read off saved ``(quantiles, probs)``."""
        self = cls(None, n_bins, threshold)
        cut = np.linspace(0, 1, n_bins + 1)[1:-1]
        self.edges = np.interp(cut, np.asarray(probs, float), np.asarray(quantiles, float))
        # subtle: with tied quantiles several edges coincide; the proportions must come from the same
        # edges (not assumed 1/n_bins) or a clean window of a discrete score would read as drift.
        self.ref_props = np.diff(np.concatenate([[0.0], np.interp(self.edges, np.asarray(quantiles, float),
                                                                   np.asarray(probs, float)), [1.0]]))
        self.ref_props = np.maximum(self.ref_props, self.eps)
        return self

    def _props(self, x: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.edges, x, side="right")
        counts = np.bincount(idx, minlength=self.n_bins).astype(float)
        return np.maximum(counts / counts.sum(), self.eps)

    def score(self, x) -> float:
        w = self._props(_window(x, "x", (1,)))
        return float(np.sum((w - self.ref_props) * np.log(w / self.ref_props)))

    def predict(self, x) -> DriftResult:
        xw = _window(x, "x", (1,))
        psi = self.score(xw)
        return DriftResult(psi > self.threshold, psi, math.nan, self.threshold,
                           {"detector": "psi", "n_bins": self.n_bins, "n_window": int(xw.shape[0])})
