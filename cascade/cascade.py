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

State (parameters, threshold, alarm statistic and every decision) lives in SQLite
(:func:`monitor.sqlite_store.connect`: WAL, ``synchronous=FULL``), so a restarted process continues
the same audit, alarm and recalibration, and several processes may share one state file. The audit
draw is a hash of ``(seed, sequence number)``, so a restart does not replay or skip draws.

Paid work and crashes. Sequence numbers are allocated inside the database (``MAX(seq) + 1`` under
``BEGIN IMMEDIATE``), and the threshold, window and alarm statistic are re-read under the same lock,
so two processes never collide or act on stale state. A decision that needs the expensive stage is
recorded *before* it is paid for: a ``pending`` row (sequence, route, cheap answer, the full cost)
is committed first, and only then is ``expensive()`` called; its answer completes the row in a
second transaction. Hence:

- the record cannot be written (file locked past ``busy_timeout_s``, read-only, disk full): the
  error is raised and nothing is paid;
- ``expensive()`` raises: the row is marked ``failed`` and the error re-raised;
- kill -9 after paying, before the completing commit (the only window; no I/O but that commit):
  that one answer is lost, but not silently -- the row stays ``pending`` (``stats()["n_pending"]``)
  with its cost counted. Pass the caller's ``request_id`` to :meth:`Cascade.decide` and a rerun of
  the same request completes that row (``attempts`` 2, both payments in ``cost``) instead of
  creating another, and a request already ``done`` is answered from its record without paying again.
  Two *live* processes deciding the same ``request_id`` at once both pay: the id is the caller's
  idempotency key, not a lock.

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
from monitor.sqlite_store import DEFAULT_BUSY_TIMEOUT_S, StoreLockedError, connect, write_transaction

__all__ = ["Cascade", "Decision", "ROUTES", "UnrecordedDecisionError", "StoreLockedError"]

ROUTES = ("pass", "audit", "escalate", "recalibrate")


class UnrecordedDecisionError(RuntimeError):
    """The expensive stage ran (and was paid for) but its record could not be completed.

    ``decision`` holds the paid answer so the caller does not lose it; the record stays ``pending``.
    """

    def __init__(self, message: str, decision: "Decision") -> None:
        super().__init__(message)
        self.decision = decision


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
    error INTEGER, cost REAL NOT NULL, threshold REAL NOT NULL, epoch INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'done', request_id TEXT, attempts INTEGER NOT NULL DEFAULT 1)"""
# Files written before statuses existed hold only finished decisions: the defaults describe them.
_ADDED_COLUMNS = {"status": "TEXT NOT NULL DEFAULT 'done'", "request_id": "TEXT", "attempts": "INTEGER NOT NULL DEFAULT 1"}
_STATE_KEYS = ("threshold", "cusum", "recal_left", "epoch")


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
        busy_timeout_s: how long a decision waits for another process's write lock before raising
            :class:`~monitor.sqlite_store.StoreLockedError` (before anything is paid for).
        synchronous: SQLite durability, ``FULL`` (default: a committed decision survives power loss)
            or ``NORMAL`` (simulations whose rows cost nothing; still crash-consistent).
        horizon, alpha: the CUSUM is built with ``p0 = error_budget``, ``p1 = alarm_ratio * budget``
            and ``h = ln(horizon / alpha)``, so the false-alarm probability within ``horizon`` audited
            decisions is at most ``alpha`` when the true pass-through error is within budget.
        recal_window: number of decisions audited in full after an alarm before re-deriving.
        confidence: confidence of the Clopper-Pearson bounds (threshold derivation, estimates).
        seed: seeds the audit draws.

    Use: ``d = cascade.decide(confidence, cheap_answer, expensive_fn, request_id=...)`` per request;
    ``cascade.stats()`` for the dashboard numbers. Several processes may share one ``path``; one
    object is for one thread.
    """

    def __init__(self, path: Path | str, threshold: float, error_budget: float = 0.05, audit_rate: float = 0.1,
                 cheap_cost: float = 0.0, expensive_cost: float = 1.0, horizon: int = 1000, alpha: float = 0.05,
                 alarm_ratio: float = 2.0, recal_window: int = 300, confidence: float = 0.95, seed: int = 0,
                 busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, synchronous: str = "FULL") -> None:
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
        self.busy_timeout_s = float(busy_timeout_s)
        try:
            self._db = connect(self.path, busy_timeout_s=self.busy_timeout_s, synchronous=synchronous)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path}: not a cascade state file (not an SQLite database: {exc})") from None
        try:
            with self._tx():
                for stmt in _SCHEMA.split(";"):
                    self._db.execute(stmt)
                cols = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
                for col, decl in _ADDED_COLUMNS.items():
                    if col not in cols:
                        self._db.execute(f"ALTER TABLE events ADD COLUMN {col} {decl}")
                self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_request ON events(request_id)")
                stored = self._get("params")
                if stored is None:
                    self._put("params", params)
                    self._put("threshold", float(threshold))
                    self._put("cusum", {"statistic": 0.0, "n_seen": 0, "alarm_at": None})
                    self._put("recal_left", 0)
                    self._put("epoch", 0)
                elif stored != params:
                    diff = {k: (stored.get(k), v) for k, v in params.items() if stored.get(k) != v}
                    raise ValueError(f"{self.path} holds a cascade with other parameters {diff} (stored, given); "
                                     "open it with the stored parameters or use a new file")
        except BaseException:
            self._db.close()
            raise
        self.params = params
        self._cusum = BernoulliCUSUM(error_budget, alarm_ratio * error_budget, horizon=horizon, alpha=alpha)
        self._load()
        self._data_version, self._fresh = None, False
        self.seq = self._max_seq()

    # -- persistence -----------------------------------------------------------------------------
    def _tx(self):
        return write_transaction(self._db, self.path, self.busy_timeout_s)

    def _get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _put(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, json.dumps(value)))

    def _refresh(self) -> None:
        """Inside a write transaction: re-read the shared state if another connection committed since.

        ``PRAGMA data_version`` changes only on other connections' commits; this object's own writes
        keep its attributes current (``_fresh`` is cleared while a state write may still roll back).
        """
        dv = self._db.execute("PRAGMA data_version").fetchone()[0]
        if dv != self._data_version or not self._fresh:
            self._load()
            self._data_version, self._fresh = dv, True

    def _load(self) -> None:
        """Re-read the shared state (another process may have moved it); one query."""
        rows = dict(self._db.execute(f"SELECT key, value FROM state WHERE key IN ({','.join('?' * len(_STATE_KEYS))})",
                                     _STATE_KEYS))
        c = json.loads(rows["cusum"])
        self._cusum.statistic_, self._cusum.n_seen_, self._cusum.alarm_at_ = c["statistic"], c["n_seen"], c["alarm_at"]
        self.threshold = float(json.loads(rows["threshold"]))
        self.recal_left = int(json.loads(rows["recal_left"]))
        self.epoch = int(json.loads(rows["epoch"]))

    def _put_cusum(self) -> None:
        self._put("cusum", {"statistic": self._cusum.statistic_, "n_seen": self._cusum.n_seen_,
                            "alarm_at": self._cusum.alarm_at_})

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

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

    def decide(self, confidence: float, cheap_answer: Hashable, expensive: Callable[[], Hashable],
               request_id: str | None = None) -> Decision:
        """Route one request. ``expensive()`` is called only when the request escalates or is audited,
        and only after its record is committed (module docstring: paid work and crashes).

        ``request_id``: the caller's idempotency key (optional). A request already decided is answered
        from its record without calling anything; one left ``pending`` or ``failed`` (a crash, an
        exception) is retried under its original sequence number and route.

        Raises :class:`~monitor.sqlite_store.StoreLockedError` (another writer held the file past
        ``busy_timeout_s``) or :class:`sqlite3.OperationalError` (file not writable) *before* paying;
        whatever ``expensive()`` raises, after marking the record ``failed``;
        :class:`UnrecordedDecisionError` (with the paid answer in ``.decision``) if the record cannot be
        completed after paying.
        """
        conf = float(confidence)
        if not np.isfinite(conf):
            raise ValueError(f"cheap-stage confidence is {conf}; a NaN confidence cannot be routed -- fix the cheap stage")
        if request_id is not None and (not isinstance(request_id, str) or not request_id):
            raise ValueError(f"request_id must be a non-empty str (the caller's idempotency key) or None, got {request_id!r}")
        p = self.params
        with self._tx():  # reserve: the record exists before anything is paid
            self._refresh()
            row = None
            if request_id is not None:
                row = self._db.execute("SELECT seq, route, confidence, cheap, expensive, error, cost, status FROM events "
                                       "WHERE request_id=?", (request_id,)).fetchone()
            if row is not None and row[7] == "done":
                seq, route, conf0, _, exp_s, error, cost, _ = row
                self.seq = seq
                # subtle: answers are stored as str; where the stored one equals this call's cheap answer,
                # return the caller's own object (its type), else the stored text
                answer = cheap_answer if route == "pass" or exp_s is None or exp_s == str(cheap_answer) else exp_s
                return Decision(answer, route, conf0, error, self.alarm, cost)
            if row is not None:  # pending (crashed) or failed: retry under the same record
                seq, route = int(row[0]), str(row[1])
                self._db.execute("UPDATE events SET status='pending', attempts=attempts+1, cost=cost+? WHERE seq=?",
                                 (p["expensive_cost"], seq))
                conf, cost = float(row[2]), float(row[6]) + p["expensive_cost"]
                threshold, epoch = self._db.execute("SELECT threshold, epoch FROM events WHERE seq=?", (seq,)).fetchone()
            else:
                seq = self._max_seq() + 1
                threshold, epoch = self.threshold, self.epoch
                if self.recal_left > 0:
                    route = "recalibrate"
                elif conf < threshold:
                    route = "escalate"
                elif self._audit_draw(seq) < p["audit_rate"]:
                    route = "audit"
                else:
                    route = "pass"
                cost = p["cheap_cost"] + (0.0 if route == "pass" else p["expensive_cost"])
                self._db.execute("INSERT INTO events (seq, route, confidence, cheap, expensive, error, cost, threshold, epoch,"
                                 " status, request_id) VALUES (?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?)",
                                 (seq, route, conf, str(cheap_answer), cost, threshold, epoch,
                                  "done" if route == "pass" else "pending", request_id))
            self.seq = seq
        if route == "pass":
            return Decision(cheap_answer, route, conf, None, self.alarm, cost)
        try:
            exp_answer = expensive()
        except BaseException:
            try:
                with self._tx():
                    self._db.execute("UPDATE events SET status='failed' WHERE seq=?", (seq,))
            except (sqlite3.Error, StoreLockedError):
                pass  # the row stays 'pending'; the expensive stage's own error is the one to report
            raise
        error = int(exp_answer != cheap_answer) if route in ("audit", "recalibrate") else None
        try:
            self._complete(seq, route, conf, threshold, epoch, exp_answer, error)
        except (sqlite3.Error, StoreLockedError) as exc:
            decision = Decision(exp_answer, route, conf, error, self.alarm, cost)
            raise UnrecordedDecisionError(
                f"{self.path}: decision {seq} was paid for but its record could not be completed ({exc}); "
                "the answer is in this error's .decision, the record stays 'pending' (stats()['n_pending'])",
                decision) from exc
        return Decision(exp_answer, route, conf, error, self.alarm, cost)

    def _complete(self, seq: int, route: str, conf: float, threshold: float, epoch: int, exp_answer: Hashable,
                  error: int | None) -> None:
        with self._tx():
            self._refresh()
            self._fresh = False  # attributes change below; valid again only once this commits
            self._db.execute("UPDATE events SET expensive=?, error=?, status='done' WHERE seq=?",
                             (str(exp_answer), error, seq))
            # subtle: only audits of *confident* decisions feed the alarm; escalated ones say nothing
            # about pass-through error, and recalibration-window items below threshold would bias it.
            # A decision reserved before another process recalibrated (older epoch) feeds nothing.
            if epoch == self.epoch and (route == "audit" or (route == "recalibrate" and conf >= threshold)):
                self._cusum.update(error)
                self._put_cusum()
            if route == "recalibrate" and epoch == self.epoch and self.recal_left > 0:
                self.recal_left -= 1
                if self.recal_left == 0:
                    self._recalibrate()
                self._put("recal_left", self.recal_left)
        self._fresh = True

    @property
    def alarm(self) -> bool:
        return self._cusum.alarm_at_ is not None

    def start_recalibration(self) -> None:
        """Audit every one of the next ``recal_window`` decisions, then re-derive the threshold."""
        with self._tx():
            self._refresh()
            self._fresh = False
            self.recal_left = int(self.params["recal_window"])
            self._put("recal_left", self.recal_left)
        self._fresh = True

    def _recalibrate(self) -> None:
        rows = self._db.execute("SELECT confidence, error FROM events WHERE route='recalibrate' AND epoch=? "
                                "AND status='done'", (self.epoch,)).fetchall()
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
        """Escalation rate, cost, audited pass-through error with its bound, calibration gap, alarm.

        Over finished (``done``) decisions with ``since_seq < seq <= until_seq`` (default: all, from every
        process sharing the file); ``n_pending`` / ``n_failed`` count the records in that range whose
        expensive call is in flight or was lost to a crash / raised.
        """
        self._load()
        until = self._max_seq() if until_seq is None else until_seq
        rows = self._db.execute("SELECT route, confidence, error, cost, threshold FROM events WHERE seq>? AND seq<=? "
                                "AND status='done' ORDER BY seq", (since_seq, until)).fetchall()
        open_ = dict(self._db.execute("SELECT status, COUNT(*) FROM events WHERE seq>? AND seq<=? AND status!='done' "
                                      "GROUP BY status", (since_seq, until)).fetchall())
        n = len(rows)
        out: dict[str, Any] = {"n": n, "n_pending": open_.get("pending", 0), "n_failed": open_.get("failed", 0),
                               "threshold": self.threshold, "alarm": self.alarm,
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
