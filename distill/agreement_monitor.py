"""Shadow-sample agreement monitor for a distilled judge: alarm on drift, escalate, retrain, accept.

Failure mode: Distillation Drift (IX). A student judge that agreed with its teacher on held-out
data disagrees more as production traffic shifts, and nobody sees it. Mechanism:

1. **Shadow sample**: each served item is, with probability ``audit_share`` (seeded), also sent to
   the teacher (through the :class:`distill.judge_cache.JudgeCache`, so an audit is never paid twice).
2. **Sequential test**: the audited disagreements (1 = student != teacher) feed a one-sided
   Bernoulli CUSUM (:class:`monitor.sequential.BernoulliCUSUM`) from the in-control rate ``p0`` to
   ``p1``. It may be read after every item: its false-alarm probability over ``horizon`` audited
   items is at most ``alpha`` (``h = ln(horizon / alpha)``, Ville's inequality; see
   :mod:`monitor.sequential`), and ``ragfix bench distill-drift`` *measures* the rate on unshifted
   streams and reports its Clopper-Pearson bound. :meth:`ShadowMonitor.from_heldout` sets ``p0`` to
   the 95% upper Clopper-Pearson bound of the held-out disagreement, so sampling error in the
   held-out estimate does not become false alarms.
3. **Escalation**: while the alarm stands, :meth:`ShadowMonitor.route` serves the teacher's verdict.
4. **Retraining and acceptance**: the audited items with their teacher verdicts
   (:attr:`ShadowMonitor.shadow_`) are the retraining set; :meth:`ShadowMonitor.accept` takes a
   retrained student back only when its agreement on *fresh* held-out production items is within
   ``tolerance`` of the reference (in-distribution) agreement; then the alarm is reset.

Leaves out: per-segment monitors (one alarm covers all traffic), importance-weighted audits,
two-sided alarms (a student that *improves* is not flagged).

Example::

    mon = ShadowMonitor.from_heldout(agree=930, n=1000, audit_share=0.05, horizon=2000, seed=0)
    label = mon.route(item, student_label, teacher=lambda i: cached_teacher_verdict(i))
    if mon.escalating: ...
"""
from __future__ import annotations

from typing import Callable, Hashable, NamedTuple, Sequence

import numpy as np

from monitor.bounds import clopper_pearson
from monitor.sequential import BernoulliCUSUM
from monitor.types import AlarmResult, Interval

__all__ = ["ShadowMonitor", "Acceptance"]


class Acceptance(NamedTuple):
    accepted: bool
    agreement: Interval  # on the fresh items, Clopper-Pearson 95%
    reference: float
    tolerance: float


class ShadowMonitor:
    """Audit a share of traffic against the teacher, alarm on rising disagreement, escalate while alarmed.

    Args:
        p0: in-control disagreement rate (student vs teacher), e.g. from :meth:`from_heldout`.
        p1: the disagreement rate the alarm is tuned to catch quickly (> p0).
        audit_share: share of items also sent to the teacher, in (0, 1].
        horizon, alpha: the CUSUM's guarantee, ``P(false alarm within horizon audited items) <= alpha``.
        seed: the audit draw's seed.
    """

    def __init__(self, p0: float, p1: float, audit_share: float = 0.05, horizon: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> None:
        if not 0.0 < audit_share <= 1.0:
            raise ValueError(f"audit_share must be in (0, 1], got {audit_share!r}")
        self.cusum = BernoulliCUSUM(p0, p1, horizon=horizon, alpha=alpha)
        self.p0, self.p1, self.audit_share = p0, p1, float(audit_share)
        self._rng = np.random.default_rng(seed)
        self.shadow_: list[tuple[Hashable, int]] = []
        self.n_items_ = 0
        self.n_audited_ = 0
        self.n_escalated_ = 0
        self.alarm_item_: int | None = None  # production item index at which the alarm fired

    @classmethod
    def from_heldout(cls, agree: int, n: int, audit_share: float = 0.05, horizon: int = 1000, alpha: float = 0.05,
                     ratio: float = 2.0, seed: int = 0) -> "ShadowMonitor":
        """``p0`` = 95% upper Clopper-Pearson bound of held-out disagreement ``(n - agree) / n``; ``p1 = min(0.5, ratio * p0)``."""
        if n < 1 or not 0 <= agree <= n:
            raise ValueError(f"need 0 <= agree <= n and n >= 1, got agree={agree}, n={n}")
        if not ratio > 1.0:
            raise ValueError(f"ratio (p1 / p0) must be > 1, got {ratio!r}")
        p0 = max(clopper_pearson(n - agree, n).upper, 1e-3)
        if p0 >= 0.45:
            raise ValueError(f"held-out disagreement bound {p0:.3f} is too high to monitor (student agrees on "
                             f"{agree}/{n}); train a better student first")
        return cls(p0, min(0.5, ratio * p0), audit_share, horizon, alpha, seed)

    @property
    def escalating(self) -> bool:
        return self.cusum.alarm_at_ is not None

    def audit(self) -> bool:
        """Count one production item; True when it is drawn for the shadow sample."""
        self.n_items_ += 1
        return bool(self._rng.random() < self.audit_share)

    def record(self, item: Hashable, student_label: int, teacher_label: int) -> AlarmResult:
        """One audited item: keep it as a shadow label and feed its disagreement to the CUSUM."""
        was = self.escalating
        self.n_audited_ += 1
        self.shadow_.append((item, int(teacher_label)))
        res = self.cusum.update(int(int(student_label) != int(teacher_label)))
        if self.escalating and not was:
            self.alarm_item_ = self.n_items_
        return res

    def route(self, item: Hashable, student_label: int, teacher: Callable[[Hashable], int]) -> int:
        """The verdict to serve for ``item``: the student's, or the teacher's while alarmed; audits as drawn."""
        audited = self.audit()
        t = teacher(item) if (audited or self.escalating) else None
        if audited:
            self.record(item, student_label, t)
        if self.escalating:
            self.n_escalated_ += 1
            return int(t)
        return int(student_label)

    def accept(self, student_labels: Sequence[int], teacher_labels: Sequence[int], reference: float,
               tolerance: float = 0.02) -> Acceptance:
        """Take a retrained student back when its agreement on fresh items is >= ``reference - tolerance``.

        On acceptance the alarm is reset (the student serves again); otherwise the monitor stays
        escalated. The items must be fresh: never in :attr:`shadow_` nor in the student's training set.
        """
        s, t = np.asarray(student_labels), np.asarray(teacher_labels)
        if s.shape != t.shape or s.size == 0:
            raise ValueError(f"student_labels and teacher_labels must be non-empty and of one length, got {s.shape}, {t.shape}")
        ci = clopper_pearson(int((s == t).sum()), int(s.size))
        ok = ci.estimate >= reference - tolerance
        if ok:
            self.cusum.reset()
            self.alarm_item_ = None
        return Acceptance(bool(ok), ci, float(reference), float(tolerance))
