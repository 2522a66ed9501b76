"""Cascade Saturation (X): a cheap -> expensive cascade that keeps measuring what it lets through.

The failure: a cascade answers confident requests with a cheap stage and escalates the rest.
It saves money until the cheap stage's calibration drifts (new intents, new domains): it stays
confident, lets through what it should escalate, escalation rate and cost per request stay flat
or even fall, and nothing measured on the old held-out set moves. Mechanism of the fix:

* a calibrated cheap stage (see :mod:`monitor.calibration`) and an escalation threshold derived
  from the error budget (:func:`cascade.thresholds.derive_threshold`, precision of passed
  decisions >= 1 - budget, at a Clopper-Pearson lower bound);
* a **random audit**: a fixed fraction of *confident* decisions is escalated anyway and the two
  answers compared, so the audited errors are a uniform sample of pass-through decisions and
  their rate an unbiased estimate of the pass-through error, reported with an exact bound;
* escalation-rate, cost and calibration-gap tracking (mean confidence of audited decisions minus
  their audited accuracy);
* a Bernoulli CUSUM (:class:`monitor.sequential.BernoulliCUSUM`) on the audit outcomes with
  in-control rate = the budget: an alarm with a documented false-alarm bound;
* recalibration: after an alarm, audit *every* decision for a window, re-derive the threshold
  on that unbiased sample of today's traffic, reset the alarm.

State (parameters, threshold, alarm statistic and every decision) lives in SQLite with WAL, so
a restarted process continues the same audit, alarm and recalibration. The audit draw is a hash
of ``(seed, sequence number)``, so a restart does not replay or skip draws.

Proved by ``ragfix bench cascade`` (CLINC150, traffic shifting to intents unseen by the cheap
stage; ``results/cascade.md``). The "error" audited is disagreement with the expensive stage:
the audit can only be as good as the stage it trusts. Leaves out: more than two stages,
per-cohort budgets, retraining the cheap stage (recalibration only moves the threshold).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, Hashable, NamedTuple

import numpy as np

from cascade.thresholds import UnattainableTargetError, derive_threshold
from monitor.bounds import clopper_pearson
from monitor.sequential import BernoulliCUSUM

__all__ = ["Cascade", "Decision", "ROUTES"]

ROUTES = ("pass", "audit", "escalate", "recalibrate")


class Decision(NamedTuple):
    """What the cascade did with one request.

    answer: the answer returned (the expensive stage's whenever it was called)
    route:  ``pass`` (cheap answer), ``audit`` (confident but sampled for audit), ``escalate``
            (below threshold), ``recalibrate`` (audited because a recalibration window is open)
    error:  for audited routes, 1 if cheap and expensive answers differ; else None
    alarm:  whether the pass-through error alarm is raised after this request
    cost:   cost of this request (cheap, plus expensive when called)
    """

    answer: Hashable
    route: str
    confidence: float
    error: int | None
    alarm: bool
    cost: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, route TEXT NOT NULL, confidence REAL NOT NULL, cheap TEXT, expensive TEXT,
    error INTEGER, cost REAL NOT NULL, threshold REAL NOT NULL, epoch INTEGER NOT NULL);
"""


class Cascade:
    """A persistent, audited two-stage cascade.

    Args:
        path: SQLite file holding the state (created if missing; reopened as-is otherwise --
            constructor parameters then must match what is stored, or a ``ValueError`` says which differ).
        threshold: initial escalation threshold on the cheap stage's calibrated confidence
            (escalate when ``confidence < threshold``); derive it with :meth:`derive`.
        error_budget: acceptable pass-through error (disagreement with the expensive stage).
        audit_rate: fraction of confident decisions escalated anyway, for the audit.
        cheap_cost, expensive_cost: cost per call of each stage (e.g. USD from measured CPU seconds).
        horizon, alpha: the CUSUM is built with ``p0 = error_budget``, ``p1 = alarm_ratio * budget``
            and ``h = ln(horizon / alpha)``, so the false-alarm probability within ``horizon`` audited
            decisions is at most ``alpha`` when the true pass-through error is within budget.
        recal_window: number of decisions audited in full after an alarm before re-deriving.
        confidence: confidence of the Clopper-Pearson bounds (threshold derivation, estimates).
        seed: seeds the audit draws.

    Use: ``d = cascade.decide(confidence, cheap_answer, expensive_fn)`` per request;
    ``cascade.stats()`` for the dashboard numbers.
    """

    def __init__(self, path: Path | str, threshold: float, error_budget: float = 0.05, audit_rate: float = 0.1,
                 cheap_cost: float = 0.0, expensive_cost: float = 1.0, horizon: int = 1000, alpha: float = 0.05,
                 alarm_ratio: float = 2.0, recal_window: int = 300, confidence: float = 0.95, seed: int = 0) -> None:
        if not (0.0 < error_budget < 0.5):
            raise ValueError(f"error_budget must be in (0, 0.5), got {error_budget}")
        if not (0.0 < audit_rate <= 1.0):
            raise ValueError(f"audit_rate must be in (0, 1], got {audit_rate}")
        if alarm_ratio <= 1.0 or alarm_ratio * error_budget >= 1.0:
            raise ValueError(f"alarm_ratio must be > 1 with alarm_ratio * error_budget < 1, got {alarm_ratio}")
        if recal_window < 10:
            raise ValueError(f"recal_window must be >= 10 decisions, got {recal_window}")
        params = {"error_budget": error_budget, "audit_rate": audit_rate, "cheap_cost": cheap_cost,
                  "expensive_cost": expensive_cost, "horizon": horizon, "alpha": alpha, "alarm_ratio": alarm_ratio,
                  "recal_window": recal_window, "confidence": confidence, "seed": seed}
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        stored = self._get("params")
        if stored is None:
            with self._db:
                self._put("params", params)
                self._put("threshold", float(threshold))
                self._put("cusum", {"statistic": 0.0, "n_seen": 0, "alarm_at": None})
                self._put("recal_left", 0)
                self._put("epoch", 0)
        elif stored != params:
            diff = {k: (stored.get(k), v) for k, v in params.items() if stored.get(k) != v}
            raise ValueError(f"{self.path} holds a cascade with other parameters {diff} (stored, given); "
                             "open it with the stored parameters or use a new file")
        self.params = params
        self._cusum = BernoulliCUSUM(error_budget, alarm_ratio * error_budget, horizon=horizon, alpha=alpha)
        c = self._get("cusum")
        self._cusum.statistic_, self._cusum.n_seen_, self._cusum.alarm_at_ = c["statistic"], c["n_seen"], c["alarm_at"]
        self.threshold = float(self._get("threshold"))
        self.recal_left = int(self._get("recal_left"))
        self.epoch = int(self._get("epoch"))
        row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        self.seq = int(row[0])

    # -- persistence -----------------------------------------------------------------------------
    def _get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _put(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        self._db.close()

    # -- deciding --------------------------------------------------------------------------------
    @staticmethod
    def derive(confidence, correct, error_budget: float, conf_level: float = 0.95) -> float:
        """Escalation threshold: pass-through accuracy >= 1 - budget at a lower confidence bound.

        ``confidence``: calibrated cheap-stage confidences on labelled data; ``correct``: 0/1
        whether the cheap answer was right (agreed with the expensive stage).
        """
        return derive_threshold(confidence, correct, "precision", 1.0 - error_budget, "above", conf_level)

    def _audit_draw(self, seq: int) -> float:
        h = hashlib.sha256(f"{self.params['seed']}:{seq}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    def decide(self, confidence: float, cheap_answer: Hashable, expensive: Callable[[], Hashable]) -> Decision:
        """Route one request. ``expensive()`` is called only when the request escalates or is audited."""
        conf = float(confidence)
        if not np.isfinite(conf):
            raise ValueError(f"cheap-stage confidence is {conf}; a NaN confidence cannot be routed -- fix the cheap stage")
        self.seq += 1
        p = self.params
        if self.recal_left > 0:
            route = "recalibrate"
        elif conf < self.threshold:
            route = "escalate"
        elif self._audit_draw(self.seq) < p["audit_rate"]:
            route = "audit"
        else:
            route = "pass"
        cost = p["cheap_cost"]
        exp_answer, error = None, None
        if route != "pass":
            exp_answer = expensive()
            cost += p["expensive_cost"]
            if route in ("audit", "recalibrate"):
                error = int(exp_answer != cheap_answer)
        # subtle: only audits of *confident* decisions feed the alarm; escalated ones say nothing
        # about pass-through error, and recalibration-window items below threshold would bias it.
        if route == "audit" or (route == "recalibrate" and conf >= self.threshold):
            self._cusum.update(error)
        answer = cheap_answer if route == "pass" else exp_answer
        with self._db:
            self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (self.seq, route, conf, str(cheap_answer), None if exp_answer is None else str(exp_answer),
                              error, cost, self.threshold, self.epoch))
            if route == "recalibrate":
                self.recal_left -= 1
                if self.recal_left == 0:
                    self._recalibrate()
                self._put("recal_left", self.recal_left)
            if error is not None:
                self._put("cusum", {"statistic": self._cusum.statistic_, "n_seen": self._cusum.n_seen_,
                                    "alarm_at": self._cusum.alarm_at_})
        return Decision(answer, route, conf, error, self.alarm, cost)

    @property
    def alarm(self) -> bool:
        return self._cusum.alarm_at_ is not None

    def start_recalibration(self) -> None:
        """Audit every one of the next ``recal_window`` decisions, then re-derive the threshold."""
        with self._db:
            self.recal_left = int(self.params["recal_window"])
            self._put("recal_left", self.recal_left)

    def _recalibrate(self) -> None:
        rows = self._db.execute("SELECT confidence, error FROM events WHERE route='recalibrate' AND epoch=?",
                                (self.epoch,)).fetchall()
        conf = np.array([r[0] for r in rows])
        correct = 1 - np.array([r[1] for r in rows])
        try:
            new = self.derive(conf, correct, self.params["error_budget"], self.params["confidence"])
        except UnattainableTargetError:
            new = float(np.nextafter(conf.max(), np.inf))  # no cutoff meets the budget: escalate everything
        self.threshold = new
        self.epoch += 1
        self._cusum.reset()
        self._put("threshold", new)
        self._put("epoch", self.epoch)
        self._put("cusum", {"statistic": 0.0, "n_seen": 0, "alarm_at": None})

    # -- reporting -------------------------------------------------------------------------------
    def stats(self, since_seq: int = 0, until_seq: int | None = None) -> dict[str, Any]:
        """Escalation rate, cost, audited pass-through error with its bound, calibration gap, alarm."""
        until = self.seq if until_seq is None else until_seq
        rows = self._db.execute("SELECT route, confidence, error, cost, threshold FROM events WHERE seq>? AND seq<=?",
                                (since_seq, until)).fetchall()
        n = len(rows)
        out: dict[str, Any] = {"n": n, "threshold": self.threshold, "alarm": self.alarm,
                               "alarm_at_audit": self._cusum.alarm_at_, "recalibrating": self.recal_left > 0}
        if n == 0:
            return out
        routes = [r[0] for r in rows]
        audited = [(r[1], r[2]) for r in rows if r[2] is not None and r[1] >= r[4]]
        k = sum(e for _, e in audited)
        iv = clopper_pearson(k, len(audited), self.params["confidence"])
        out.update(
            threshold_used=rows[-1][4],
            escalation_rate=round(routes.count("escalate") / n, 4),
            expensive_call_rate=round(sum(r != "pass" for r in routes) / n, 4),
            cost_per_request=sum(r[3] for r in rows) / n,
            n_audited=len(audited),
            passthrough_error=None if not audited else round(iv.estimate, 4),
            passthrough_error_lo=round(iv.lower, 4), passthrough_error_hi=round(iv.upper, 4),
            calibration_gap=None if not audited else round(float(np.mean([c for c, _ in audited]) - (1 - iv.estimate)), 4),
        )
        return out
