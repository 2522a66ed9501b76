"""Cascade state shared by processes: sequence numbers from the database, never pay before the record can be written."""
import multiprocessing as mp
import os
import signal
import sqlite3

import numpy as np
import pytest

from cascade import Cascade
from monitor.sqlite_store import StoreLockedError

ARGS = dict(threshold=0.9, error_budget=0.08, audit_rate=0.2, horizon=2000, alpha=0.05, recal_window=400,
            cheap_cost=1.0, expensive_cost=10.0, seed=0)


class Expensive:
    """A real (cheap) expensive stage that counts how often it was paid for, in a file shared by processes."""

    def __init__(self, tally: str, answer: str = "b") -> None:
        self.tally, self.answer, self.calls = tally, answer, 0

    def __call__(self) -> str:
        self.calls += 1
        with open(self.tally, "a") as fh:
            fh.write("x")
            fh.flush()
            os.fsync(fh.fileno())
        return self.answer


def _paid(tally) -> int:
    return len(open(tally).read()) if os.path.exists(tally) else 0


def _decide_many(path: str, tally: str, seed: int, barrier, q) -> None:
    fails = []
    try:
        c = Cascade(path, **ARGS)
        rng = np.random.default_rng(seed)
        exp = Expensive(tally)
        barrier.wait(timeout=60)
        for cf in rng.uniform(0.8, 1.0, 300):
            try:
                c.decide(cf, "a", exp)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                fails.append(f"{type(exc).__name__}: {exc}")
        c.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        fails.append(f"{type(exc).__name__}: {exc}")
    finally:
        q.put(fails)


def test_two_processes_share_one_state_file(tmp_path):
    ctx = mp.get_context("fork")
    q, barrier = ctx.Queue(), ctx.Barrier(2)
    path, tally = str(tmp_path / "state.sqlite"), str(tmp_path / "paid.txt")
    procs = [ctx.Process(target=_decide_many, args=(path, tally, s, barrier, q)) for s in (1, 2)]
    for p in procs:
        p.start()
    fails = [f for _ in procs for f in q.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert fails == []
    db = sqlite3.connect(path)
    seqs = [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, 601))  # 600 rows, unique, no gaps
    routes = [r[0] for r in db.execute("SELECT route FROM events")]
    # every paid call has its record, and every record of a paid route was paid exactly once
    assert _paid(tally) == sum(r != "pass" for r in routes)
    c = Cascade(path, **ARGS)
    s = c.stats()
    assert s["n"] == 600 and s["n_pending"] == 0 and c.seq == 600
    # the alarm statistic saw every audit of both processes (state re-read under the lock: no lost update)
    assert c._cusum.n_seen_ == routes.count("audit") > 0


def test_nothing_is_paid_when_the_record_cannot_be_written(tmp_path):
    path, tally = tmp_path / "state.sqlite", str(tmp_path / "paid.txt")
    c = Cascade(path, busy_timeout_s=0.3, **ARGS)
    exp = Expensive(tally)
    c.decide(0.5, "a", exp)  # escalates: paid once, recorded
    assert exp.calls == 1
    hold = sqlite3.connect(path, isolation_level=None)
    hold.execute("BEGIN IMMEDIATE")  # another writer holds the state file past the timeout
    try:
        with pytest.raises(StoreLockedError, match="locked by another writer"):
            c.decide(0.5, "a", exp)
        assert exp.calls == 1  # raised BEFORE the expensive stage ran
    finally:
        hold.execute("ROLLBACK")
        hold.close()
    c.decide(0.5, "a", exp)
    assert exp.calls == 2 and _paid(tally) == 2
    assert c.stats()["n"] == 2


def _crash_after_paying(path: str, tally: str) -> None:
    c = Cascade(path, **ARGS)

    def pay_then_die():
        Expensive(tally)()
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between paying and recording

    c.decide(0.5, "a", pay_then_die, request_id="req-1")


def test_kill_after_paying_leaves_a_pending_record_and_a_rerun_pays_once(tmp_path):
    path, tally = str(tmp_path / "state.sqlite"), str(tmp_path / "paid.txt")
    p = mp.get_context("fork").Process(target=_crash_after_paying, args=(path, tally))
    p.start()
    p.join(timeout=60)
    assert p.exitcode == -signal.SIGKILL and _paid(tally) == 1
    c = Cascade(path, **ARGS)
    s = c.stats()
    assert s["n"] == 0 and s["n_pending"] == 1  # the paid, unrecorded call is visible, not silently lost
    exp = Expensive(tally)
    d = c.decide(0.5, "a", exp, request_id="req-1")  # rerun of the same request completes the same row
    assert d.route == "escalate" and d.answer == "b" and exp.calls == 1
    again = c.decide(0.5, "a", exp, request_id="req-1")  # and a completed request is never paid again
    assert again == d and exp.calls == 1
    rows = sqlite3.connect(path).execute("SELECT seq, status, attempts, cost FROM events").fetchall()
    assert rows == [(1, "done", 2, 1.0 + 2 * 10.0)]  # one record; both payments on it
    s = c.stats()
    assert s["n"] == 1 and s["n_pending"] == 0


def test_expensive_stage_that_raises_is_recorded_as_failed(tmp_path):
    c = Cascade(tmp_path / "s.sqlite", **ARGS)

    def boom():
        raise RuntimeError("upstream 503")

    with pytest.raises(RuntimeError, match="503"):
        c.decide(0.5, "a", boom, request_id="r")
    assert c.stats()["n_failed"] == 1
    d = c.decide(0.5, "a", lambda: "b", request_id="r")  # retried under the same record
    assert d.answer == "b" and c.stats()["n"] == 1 and c.stats()["n_failed"] == 0


def test_paid_answer_is_handed_back_when_the_record_cannot_be_completed(tmp_path):
    from cascade.cascade import UnrecordedDecisionError

    path = tmp_path / "s.sqlite"
    c = Cascade(path, busy_timeout_s=0.3, **ARGS)
    hold = sqlite3.connect(path, isolation_level=None)

    def pay_while_another_writer_takes_the_lock():
        hold.execute("BEGIN IMMEDIATE")
        return "b"

    try:
        with pytest.raises(UnrecordedDecisionError, match="paid for but its record could not be completed") as ei:
            c.decide(0.5, "a", pay_while_another_writer_takes_the_lock, request_id="r")
        assert ei.value.decision.answer == "b" and ei.value.decision.route == "escalate"
    finally:
        hold.execute("ROLLBACK")
        hold.close()
    assert c.stats()["n_pending"] == 1


def test_state_file_of_the_previous_format_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    Cascade(path, **ARGS).close()
    db = sqlite3.connect(path)  # rebuild the events table as the previous version wrote it, with one decision
    db.executescript("""
        DROP TABLE events; DROP INDEX IF EXISTS events_request;
        CREATE TABLE events (seq INTEGER PRIMARY KEY, route TEXT NOT NULL, confidence REAL NOT NULL, cheap TEXT,
            expensive TEXT, error INTEGER, cost REAL NOT NULL, threshold REAL NOT NULL, epoch INTEGER NOT NULL);
        INSERT INTO events VALUES (1, 'escalate', 0.5, 'a', 'b', NULL, 11.0, 0.9, 0);""")
    db.close()
    c = Cascade(path, **ARGS)
    assert c.seq == 1 and c.stats()["n"] == 1
    c.decide(0.5, "a", lambda: "b", request_id="r")
    assert c.stats()["n"] == 2 and c.seq == 2
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    with pytest.raises(ValueError, match="not a cascade state file"):
        Cascade(tmp_path / "notes.txt", **ARGS)
