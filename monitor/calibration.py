"""Calibration: make a score mean what it says, and measure how far it is from doing so.

Failure modes served: Threshold by Feel (III) and Cascade Saturation (X). A cascade escalates
below a confidence threshold; if "0.9" does not mean 90% correct, the threshold and the
pass-through error it promises are fiction. Mechanism: post-hoc calibration maps fitted on a
held-out set -- temperature scaling for multiclass logits (Guo et al., ICML 2017), Platt scaling
(a 1-D logistic fit) and isotonic regression (Zadrozny & Elkan, KDD 2002) for binary scores --
and the metrics that say whether it worked: expected calibration error (ECE, equal-width bins),
Brier score and a reliability diagram. Proved by ``ragfix bench cascade`` (ECE of the cheap stage
before/after) and tested in ``tests/unit/test_monitor_calibration.py`` (ECE and Brier fall after
fitting on miscalibrated data).

Leaves out: vector/matrix scaling, Dirichlet calibration, adaptive-bin ECE.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import optimize
from scipy.special import log_softmax, softmax

__all__ = [
    "TemperatureScaling",
    "PlattScaling",
    "IsotonicCalibration",
    "expected_calibration_error",
    "brier_score",
    "reliability_curve",
    "reliability_diagram",
]


def _as_1d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty; need at least one value")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(a)))} NaN or infinite values; drop or fix them first")
    return a


def _as_binary(y, name: str, n: int) -> np.ndarray:
    a = np.asarray(y)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name} must hold only 0/1 (or False/True)")
    return a.astype(np.float64)


def _as_prob(p, name: str) -> np.ndarray:
    a = _as_1d(p, name)
    if np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"{name} has values outside [0, 1]; pass probabilities, or calibrate raw scores first")
    return a


class TemperatureScaling:
    """Divide multiclass logits by one learned temperature ``T`` (fit by minimising NLL).

    ``fit(logits (n, k), labels (n,) int) -> self``; ``temperature_`` is learned;
    ``predict_proba(logits) -> (n, k)``. T > 1 softens an over-confident model.

    >>> import numpy as np
    >>> ts = TemperatureScaling().fit(np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0]]), np.array([0, 1, 1]))
    >>> ts.temperature_ > 1
    True
    """

    def __init__(self, bounds: tuple[float, float] = (0.01, 100.0)) -> None:
        if not (0 < bounds[0] < bounds[1]):
            raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
        self.bounds = bounds

    @staticmethod
    def _check(logits, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
        z = np.asarray(logits, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
            raise ValueError(f"logits must have shape (n, k) with n >= 1 and k >= 2, got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("logits has NaN or infinite values")
        if labels is None:
            return z, None
        y = np.asarray(labels)
        if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integer class indices of shape ({z.shape[0]},), got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= z.shape[1]:
            raise ValueError(f"labels must lie in [0, {z.shape[1] - 1}]")
        return z, y

    def fit(self, logits, labels) -> "TemperatureScaling":
        z, y = self._check(logits, labels)

        def nll(log_t: float) -> float:
            lp = log_softmax(z / np.exp(log_t), axis=1)
            return float(-lp[np.arange(len(y)), y].mean())

        lo, hi = np.log(self.bounds[0]), np.log(self.bounds[1])
        res = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
        self.temperature_ = float(np.exp(res.x))
        return self

    def predict_proba(self, logits) -> np.ndarray:
        if not hasattr(self, "temperature_"):
            raise RuntimeError("TemperatureScaling is not fitted; call fit(logits, labels) first")
        z, _ = self._check(logits)
        return softmax(z / self.temperature_, axis=1)


class PlattScaling:
    """Binary scores -> probabilities through ``sigmoid(a * s + b)`` fitted by logistic regression.

    ``fit(scores (n,), y (n,) 0/1) -> self``; ``coef_``, ``intercept_`` learned; ``predict(scores)``.
    Works on any real-valued score (cosine, logit, margin).
    """

    def fit(self, scores, y) -> "PlattScaling":
        from sklearn.linear_model import LogisticRegression

        s = _as_1d(scores, "scores")
        t = _as_binary(y, "y", s.size)
        if t.min() == t.max():
            raise ValueError("y holds a single class; Platt scaling needs both positives and negatives")
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(s[:, None], t.astype(int))
        self.coef_ = float(lr.coef_[0, 0])
        self.intercept_ = float(lr.intercept_[0])
        return self

    def predict(self, scores) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError("PlattScaling is not fitted; call fit(scores, y) first")
        s = _as_1d(scores, "scores")
        return 1.0 / (1.0 + np.exp(-(self.coef_ * s + self.intercept_)))


class IsotonicCalibration:
    """Monotone, non-parametric map from score to probability (sklearn's ``IsotonicRegression``).

    ``fit(scores, y) -> self``; ``iso_`` learned; ``predict(scores)`` clips outside the fitted range.
    Needs more data than Platt (hundreds of labels) but assumes no shape.
    """

    def fit(self, scores, y) -> "IsotonicCalibration":
        from sklearn.isotonic import IsotonicRegression

        s = _as_1d(scores, "scores")
        t = _as_binary(y, "y", s.size)
        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, t)
        return self

    def predict(self, scores) -> np.ndarray:
        if not hasattr(self, "iso_"):
            raise RuntimeError("IsotonicCalibration is not fitted; call fit(scores, y) first")
        return np.asarray(self.iso_.predict(_as_1d(scores, "scores")), dtype=np.float64)


def reliability_curve(confidence, correct, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins over [0, 1]: ``(mean confidence, accuracy, count)`` per bin (nan where empty).

    Not ``sklearn.calibration.calibration_curve``: that drops empty bins and returns no counts, and
    ECE and the reliability diagram need both.

    ``confidence`` is the predicted probability of the event ``correct`` (0/1): for a binary
    model ``(p, y)``, for a multiclass model ``(max prob, argmax == label)``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    c = _as_prob(confidence, "confidence")
    t = _as_binary(correct, "correct", c.size)
    # subtle: a confidence of exactly 1.0 belongs to the last bin, not to an (n_bins+1)-th.
    idx = np.minimum((c * n_bins).astype(int), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=c, minlength=n_bins) / count
        acc = np.bincount(idx, weights=t, minlength=n_bins) / count
    return conf, acc, count


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / n) |acc_b - conf_b| over equal-width bins (Naeini et al., AAAI 2015)."""
    conf, acc, count = reliability_curve(confidence, correct, n_bins)
    m = count > 0
    return float(np.sum(count[m] / count.sum() * np.abs(acc[m] - conf[m])))


def brier_score(prob, y) -> float:
    """Mean squared error of probabilities: binary ``(p (n,), y 0/1)`` or multiclass ``(P (n, k), labels int)``."""
    p = np.asarray(prob, dtype=np.float64)
    if p.ndim == 2:
        lab = np.asarray(y)
        if lab.shape != (p.shape[0],):
            raise ValueError(f"labels must have shape ({p.shape[0]},), got {lab.shape}")
        onehot = np.zeros_like(p)
        onehot[np.arange(p.shape[0]), lab.astype(int)] = 1.0
        return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    p = _as_prob(p, "prob")
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(_as_binary(y, "y", p.size), p, pos_label=1))


def reliability_diagram(confidence, correct, path: Path | str, n_bins: int = 15, title: str = "",
                        others: dict[str, tuple] | None = None) -> Path:
    """Write a reliability diagram PNG (matplotlib, Agg backend) and return its path.

    ``others`` maps a label to another ``(confidence, correct)`` pair drawn on the same axes
    (e.g. ``{"calibrated": (p_cal, y)}``) so before and after sit side by side.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {"model": (confidence, correct), **(others or {})}
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    for label, (c, t) in series.items():
        conf, acc, count = reliability_curve(c, t, n_bins)
        m = count > 0
        ece = expected_calibration_error(c, t, n_bins)
        ax.plot(conf[m], acc[m], marker="o", label=f"{label} (ECE {ece:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
