"""Threshold by Feel (III): derive a score cutoff from a target, prove what it achieves, and guard it.

The failure: a cutoff picked because it looked round ("keep passages scoring >= 0.5") works
until the upstream model changes; a new release that emits logits instead of sigmoid scores,
or a new embedder whose cosines sit at 0.8 instead of 0.4, moves every decision without a
sound. Mechanism of the fix:

1. :func:`derive_threshold` picks the cutoff from a precision or recall target on labelled
   data, choosing among the cutoffs whose Clopper-Pearson *lower* bound meets the target (so
   the claim survives sampling noise), the one that gives away least of the other metric;
   :func:`derive_cost_threshold` minimises expected cost ``c_fp * FP + c_fn * FN`` instead.
2. :func:`achieved` reports precision, recall and flag rate with exact bounds, overall and per
   cohort (query length, domain...), for any cutoff -- the diagnostic for a round cutoff.
3. :class:`ThresholdSpec` saves the cutoff with the scorer's fingerprint, the target, the
   achieved metrics with bounds, the calibration scores' quantiles, a data hash and the date,
   as versioned JSON; ``load`` checks the version.
4. :class:`ThresholdGuard` refuses a spec made for another scorer fingerprint and alarms when
   live scores drift from the quantiles saved in the spec (one-sample KS and PSI).

Proved by ``ragfix bench thresholds`` (SciFact relevance and CLINC150 out-of-scope, round cutoff
vs derived threshold, before and after swapping the upstream model; ``results/thresholds.md``).
Leaves out: thresholds on multi-dimensional scores, weighted (importance-sampled) labels,
online re-derivation (see ``cascade.cascade`` for the recalibrating loop).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from monitor.bounds import bootstrap_interval, clopper_pearson
from monitor.drift import KSDrift, PSIDrift
from monitor.types import DriftResult

__all__ = [
    "METRICS",
    "DIRECTIONS",
    "SPEC_FORMAT",
    "UnattainableTargetError",
    "ScorerMismatchError",
    "SpecFormatError",
    "derive_threshold",
    "derive_cost_threshold",
    "achieved",
    "data_hash",
    "ThresholdSpec",
    "ThresholdGuard",
]

METRICS = ("precision", "recall")
DIRECTIONS = ("above", "below")  # positive when score >= t ("above") or score <= t ("below")
SPEC_FORMAT = "ragfix.ThresholdSpec/1"
QUANTILE_PROBS = tuple(np.round(np.linspace(0, 1, 101), 2).tolist())


class UnattainableTargetError(ValueError):
    """No cutoff meets the target at the requested confidence; the message gives the best achievable."""


class ScorerMismatchError(ValueError):
    """A spec was made for a different scorer fingerprint than the one scoring now."""


class SpecFormatError(ValueError):
    """A spec file is not a ragfix ThresholdSpec of a version this code reads."""


def _check_inputs(scores, labels, direction: str) -> tuple[np.ndarray, np.ndarray]:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of the same length, got {s.shape} and {y.shape}")
    if s.size == 0:
        raise ValueError("empty window: no scores to derive or evaluate a threshold on")
    bad = ~np.isfinite(s)
    if bad.any():
        raise ValueError(f"scores has {int(bad.sum())} NaN or infinite values (first at index "
                         f"{int(np.flatnonzero(bad)[0])}); a NaN score has no side of any threshold -- fix the scorer")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must hold only 0/1 (1 = the positive class the threshold should flag)")
    return s, y.astype(np.int64)


def _sweep(s: np.ndarray, y: np.ndarray, direction: str):
    """Every distinct cutoff, most selective first: ``(thresholds, n_flagged, tp)``."""
    key = s if direction == "above" else -s
    order = np.argsort(-key, kind="stable")
    ks, ys = key[order], y[order]
    tp = np.cumsum(ys)
    # subtle: only positions where the next score differs are real cutoffs; with ties, "flag the
    # top k" is not expressible as a threshold, so k must jump to the end of each tie block.
    last = np.r_[ks[1:] != ks[:-1], True]
    k = np.flatnonzero(last) + 1
    thr = ks[k - 1] if direction == "above" else -ks[k - 1]
    return thr, k, tp[k - 1]


def _cp_lower(k: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    # subtle: the lower end of the *two-sided* interval at `confidence`, i.e. one-sided at
    # (1 + confidence) / 2, so that the bound a spec reports (two-sided, via clopper_pearson) is the
    # very bound the derivation required to meet the target.
    with np.errstate(invalid="ignore"):
        lo = stats.beta.ppf((1.0 - confidence) / 2.0, k, n - k + 1)
    return np.where(k == 0, 0.0, np.nan_to_num(lo))


def derive_threshold(scores, labels, metric: str, target: float, direction: str = "above",
                     confidence: float = 0.95, bound: str = "lower") -> float:
    """The cutoff that meets ``metric >= target`` on ``(scores, labels)``.

    Args:
        scores: ``(n,)`` finite scores.
        labels: ``(n,)`` 0/1; 1 is the class the threshold flags (relevant, out-of-scope, ...).
        metric: ``"precision"`` (of the flagged items) or ``"recall"`` (of the positives).
        target: in (0, 1).
        direction: ``"above"`` flags ``score >= t``; ``"below"`` flags ``score <= t``.
        confidence: level of the two-sided Clopper-Pearson interval whose lower end must meet the
            target with ``bound="lower"`` (the same interval :func:`achieved` reports).
        bound: ``"lower"`` (the bound must meet the target; the default and the honest one) or
            ``"point"`` (the point estimate must).

    Among qualifying cutoffs it returns the least selective one for a precision target (most
    recall) and the most selective one for a recall target (most precision).

    Raises:
        UnattainableTargetError: no cutoff qualifies; the message states the best achievable.

    >>> derive_threshold([0.9, 0.8, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0], "recall", 0.6, bound="point")
    0.8
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not (0.0 < target < 1.0):
        raise ValueError(f"target must be in (0, 1), got {target}")
    if bound not in ("lower", "point"):
        raise ValueError(f"bound must be 'lower' or 'point', got {bound!r}")
    if not (0.5 <= confidence < 1.0):
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    s, y = _check_inputs(scores, labels, direction)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise UnattainableTargetError("labels hold no positives; precision and recall are undefined -- "
                                      "label some positives before deriving a threshold")
    thr, k, tp = _sweep(s, y, direction)
    if metric == "precision":
        value = _cp_lower(tp, k, confidence) if bound == "lower" else tp / k
        ok = np.flatnonzero(value >= target)
        if ok.size == 0:
            raise UnattainableTargetError(
                f"no threshold reaches precision >= {target} (bound={bound!r}, confidence={confidence}): the best "
                f"is {value.max():.3f} at threshold {thr[value.argmax()]:.4g} over {len(s)} items with {n_pos} "
                "positives; lower the target, add labelled data, or use a better scorer")
        return float(thr[ok[-1]])  # least selective qualifying cutoff
    value = _cp_lower(tp, np.full_like(tp, n_pos), confidence) if bound == "lower" else tp / n_pos
    ok = np.flatnonzero(value >= target)
    if ok.size == 0:
        raise UnattainableTargetError(
            f"no threshold reaches recall >= {target} (bound={bound!r}, confidence={confidence}): flagging every "
            f"item gives {value.max():.3f} with {n_pos} positives; lower the target or label more positives")
    return float(thr[ok[0]])  # most selective qualifying cutoff


def derive_cost_threshold(scores, labels, cost_fp: float, cost_fn: float, direction: str = "above") -> float:
    """The cutoff minimising ``cost_fp * FP + cost_fn * FN`` (ties: the more selective cutoff).

    Flagging nothing is a candidate too: it is returned as a cutoff beyond every score.
    """
    if cost_fp < 0 or cost_fn < 0 or cost_fp + cost_fn == 0:
        raise ValueError(f"costs must be >= 0 and not both 0, got cost_fp={cost_fp}, cost_fn={cost_fn}")
    s, y = _check_inputs(scores, labels, direction)
    thr, k, tp = _sweep(s, y, direction)
    n_pos = int(y.sum())
    cost = cost_fp * (k - tp) + cost_fn * (n_pos - tp)
    none_cost = cost_fn * n_pos
    i = int(np.argmin(cost))
    if none_cost <= cost[i]:
        return float(np.nextafter(s.max(), np.inf) if direction == "above" else np.nextafter(s.min(), -np.inf))
    return float(thr[i])


def _flag(s: np.ndarray, threshold: float, direction: str) -> np.ndarray:
    return s >= threshold if direction == "above" else s <= threshold


def _metrics(flag: np.ndarray, y: np.ndarray, confidence: float) -> dict[str, Any]:
    tp = int(np.sum(flag & (y == 1)))
    k, n_pos = int(flag.sum()), int(y.sum())
    out: dict[str, Any] = {"n": int(y.size), "n_pos": n_pos, "n_flagged": k}
    for name, num, den in (("precision", tp, k), ("recall", tp, n_pos), ("flag_rate", k, int(y.size))):
        iv = clopper_pearson(num, den, confidence)
        out[name] = None if math.isnan(iv.estimate) else round(iv.estimate, 4)
        out[f"{name}_lo"], out[f"{name}_hi"] = round(iv.lower, 4), round(iv.upper, 4)
    return out


def achieved(scores, labels, threshold: float, direction: str = "above", confidence: float = 0.95,
             cohorts: Sequence[str] | None = None, cost: tuple[float, float] | None = None) -> dict[str, Any]:
    """Where a cutoff lands: precision, recall and flag rate with two-sided Clopper-Pearson bounds.

    Returns ``{"threshold", "direction", "confidence", "n", "n_pos", "n_flagged", "precision",
    "precision_lo", "precision_hi", "recall", ..., "flag_rate", ..., "per_cohort": {name: {...}}}``;
    ``precision`` is ``None`` where nothing was flagged. With ``cost=(c_fp, c_fn)`` it adds
    ``cost_per_item`` with a bootstrap interval.
    """
    s, y = _check_inputs(scores, labels, direction)
    flag = _flag(s, float(threshold), direction)
    out = {"threshold": float(threshold), "direction": direction, "confidence": confidence,
           **_metrics(flag, y, confidence)}
    if cost is not None:
        per = cost[0] * (flag & (y == 0)) + cost[1] * (~flag & (y == 1))
        iv = bootstrap_interval(per.astype(float), confidence=confidence)
        out.update(cost_per_item=round(iv.estimate, 5), cost_per_item_lo=round(iv.lower, 5),
                   cost_per_item_hi=round(iv.upper, 5))
    if cohorts is not None:
        c = np.asarray(cohorts, dtype=object)
        if c.shape != s.shape:
            raise ValueError(f"cohorts must have one entry per score ({s.size}), got {c.shape}")
        out["per_cohort"] = {str(name): _metrics(flag[c == name], y[c == name], confidence)
                             for name in sorted(set(c.tolist()), key=str)}
    return out


def data_hash(scores, labels) -> str:
    """sha256 (16 hex) over the float64 scores and int labels a spec was derived on."""
    h = hashlib.sha256(np.asarray(scores, dtype=np.float64).tobytes())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class ThresholdSpec:
    """A threshold and everything needed to trust it later; ``save`` / ``load`` as versioned JSON.

    Build one with :meth:`fit` (from a target) or :meth:`fit_cost` (from costs).
    """

    threshold: float
    direction: str
    scorer_fingerprint: str
    target: dict[str, Any]
    achieved: dict[str, Any]
    score_quantiles: list[float]
    quantile_probs: list[float]
    data_hash: str
    created: str
    scorer_name: str = ""
    task: str = ""
    format: str = SPEC_FORMAT
    notes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, scores, labels, *, metric: str, target: float, scorer_fingerprint: str, direction: str = "above",
            confidence: float = 0.95, bound: str = "lower", cohorts: Sequence[str] | None = None,
            scorer_name: str = "", task: str = "") -> "ThresholdSpec":
        """Derive the threshold for ``metric >= target`` and record what it achieves on this data."""
        t = derive_threshold(scores, labels, metric, target, direction, confidence, bound)
        tgt = {"metric": metric, "value": target, "confidence": confidence, "bound": bound}
        return cls._build(scores, labels, t, direction, tgt, scorer_fingerprint, cohorts, scorer_name, task)

    @classmethod
    def fit_cost(cls, scores, labels, *, cost_fp: float, cost_fn: float, scorer_fingerprint: str,
                 direction: str = "above", cohorts: Sequence[str] | None = None, scorer_name: str = "",
                 task: str = "") -> "ThresholdSpec":
        """Derive the expected-cost-minimising threshold and record what it achieves."""
        t = derive_cost_threshold(scores, labels, cost_fp, cost_fn, direction)
        tgt = {"metric": "cost", "cost_fp": cost_fp, "cost_fn": cost_fn}
        return cls._build(scores, labels, t, direction, tgt, scorer_fingerprint, cohorts, scorer_name, task,
                          cost=(cost_fp, cost_fn))

    @classmethod
    def _build(cls, scores, labels, t, direction, tgt, fingerprint, cohorts, scorer_name, task, cost=None):
        if not fingerprint:
            raise ValueError("scorer_fingerprint is required: it is what lets a guard refuse a swapped model")
        s, y = _check_inputs(scores, labels, direction)
        ach = achieved(s, y, t, direction, tgt.get("confidence", 0.95), cohorts, cost)
        q = np.quantile(s, QUANTILE_PROBS)
        return cls(threshold=float(t), direction=direction, scorer_fingerprint=fingerprint, target=tgt,
                   achieved=ach, score_quantiles=[float(v) for v in q], quantile_probs=list(QUANTILE_PROBS),
                   data_hash=data_hash(s, y), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   scorer_name=scorer_name, task=task)

    def predict(self, scores) -> np.ndarray:
        """Boolean flags (``score >= threshold`` or ``<=``); NaN scores raise."""
        s = np.asarray(scores, dtype=np.float64)
        if s.size and not np.all(np.isfinite(s)):
            raise ValueError(f"scores has {int(np.sum(~np.isfinite(s)))} NaN or infinite values; refusing to decide")
        return _flag(s, self.threshold, self.direction)

    def recheck(self, scores, labels) -> tuple[bool | None, dict[str, Any]]:
        """Does the threshold still meet its target on a labelled audit set scored by the scorer in use now?

        Returns ``(met, achieved)``: ``met`` compares the same bound the spec was derived with (by default
        the Clopper-Pearson *lower* bound of the target metric, at the spec's confidence) with the target,
        so a small audit set can only confirm a threshold it has enough evidence for. ``None`` for cost
        targets (no single metric to compare: re-derive instead). This is what a guard needs after a
        scorer change: scores alone cannot show that recall at the cutoff fell.
        """
        s, y = _check_inputs(scores, labels, self.direction)
        conf = float(self.target.get("confidence", 0.95))
        ach = achieved(s, y, self.threshold, self.direction, conf)
        metric = self.target.get("metric")
        if metric not in METRICS:
            return None, ach
        bound = self.target.get("bound", "lower")
        value = ach.get(f"{metric}_lo" if bound == "lower" else metric)
        return (value is not None and value >= float(self.target["value"])), ach

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str) -> "ThresholdSpec":
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SpecFormatError(f"{path}: not valid JSON ({exc.msg}); is this a threshold spec?") from None
        if not isinstance(raw, dict) or raw.get("format") != SPEC_FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise SpecFormatError(f"{path}: format {got!r}, this code reads {SPEC_FORMAT!r}; "
                                  "re-derive the spec with `ragfix calibrate threshold`")
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("threshold", "direction", "scorer_fingerprint", "score_quantiles") if k not in raw]
        if missing:
            raise SpecFormatError(f"{path}: missing field(s) {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in known})


class ThresholdGuard:
    """Stands between a spec and live scores: right scorer, same score distribution.

    Args:
        spec: the :class:`ThresholdSpec` in force.
        scorer_fingerprint: fingerprint of the scorer producing the live scores. A mismatch raises
            :class:`ScorerMismatchError` at construction -- the swap is refused, not warned about.
        p_val: significance of the one-sample KS test against the spec's quantiles.
        psi_threshold: PSI above which the window counts as drifted.
        min_window: windows smaller than this raise instead of returning a noise verdict.

    ``predict(window)`` returns a :class:`~monitor.types.DriftResult` whose ``is_drift`` is true when
    KS or PSI fires; ``meta`` carries both statistics and the live flag rate next to the spec's.
    """

    def __init__(self, spec: ThresholdSpec, scorer_fingerprint: str, p_val: float = 0.01,
                 psi_threshold: float = 0.25, min_window: int = 30) -> None:
        if scorer_fingerprint != spec.scorer_fingerprint:
            raise ScorerMismatchError(
                f"threshold spec (task {spec.task!r}) was derived for scorer {spec.scorer_name or '?'} fingerprint "
                f"{spec.scorer_fingerprint!r}, but live scores come from fingerprint {scorer_fingerprint!r}; its "
                f"threshold {spec.threshold:.4g} means nothing for another model -- re-derive it with "
                "`ragfix calibrate threshold` on labelled data scored by the new model")
        if min_window < 1:
            raise ValueError(f"min_window must be >= 1, got {min_window}")
        self.spec, self.min_window = spec, min_window
        self._ks = KSDrift.from_quantiles(spec.score_quantiles, spec.quantile_probs, p_val=p_val)
        self._psi = PSIDrift.from_quantiles(spec.score_quantiles, spec.quantile_probs, threshold=psi_threshold)

    def score(self, scores) -> float:
        """The one-sample KS statistic of the window against the spec's score distribution."""
        return self.predict(scores).statistic

    def predict(self, scores) -> DriftResult:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1 or s.size == 0:
            raise ValueError("empty window: the guard needs at least one live score (got none); "
                             "check that traffic is reaching the scorer")
        if s.size < self.min_window:
            raise ValueError(f"window of {s.size} scores is below min_window={self.min_window}; "
                             "a drift verdict on so few would be noise -- wait for more traffic")
        ks = self._ks.predict(s)  # raises on NaN with a clear message
        psi = self._psi.predict(s)
        flag_rate = float(np.mean(self.spec.predict(s)))
        return DriftResult(bool(ks.is_drift or psi.is_drift), ks.statistic, ks.p_val, ks.threshold,
                           {"detector": "threshold_guard", "ks_fired": bool(ks.is_drift), "psi": psi.statistic,
                            "psi_threshold": psi.threshold, "psi_fired": bool(psi.is_drift), "n_window": int(s.size),
                            "live_flag_rate": flag_rate, "spec_flag_rate": self.spec.achieved.get("flag_rate")})
