"""Ledger under concurrency: one object shared by threads, many processes creating one new file."""
import multiprocessing as mp
import sqlite3
import threading
import time

import pytest

from distill.ledger import Ledger, LedgerFormatError, Prices
from monitor.sqlite_store import StoreLockedError

RAW = {"compute": {"cpu_core_hour_usd": 0.036}, "llms": {"api-llm": {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 0.6}}}


def test_one_ledger_shared_by_8_threads_keeps_every_row(tmp_path):
    errors: list[BaseException] = []
    with Ledger(tmp_path / "l.sqlite", Prices(RAW)) as led:
        start = threading.Barrier(8)

        def work(t: int) -> None:
            start.wait()
            try:
                for i in range(300):
                    led.record("intent", "api-llm", tokens_in=i, meta={"thread": t})
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        rows = led.rows()
    assert len(rows) == 2400
    assert sorted(r["tokens_in"] for r in rows) == sorted(list(range(300)) * 8)


def _open_many(folder: str, n: int, barrier, q) -> None:
    fails = []
    for r in range(n):
        barrier.wait()  # every round, all processes race to create the same new file
        try:
            Ledger(f"{folder}/new-{r}.sqlite", Prices(RAW)).close()
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            fails.append(f"{type(exc).__name__}: {exc}")
    q.put(fails)


def test_six_processes_create_the_same_new_ledger(tmp_path):
    """6 processes x 30 opens, each round a new file all six create at once: 180 opens, none may fail."""
    ctx = mp.get_context("fork")  # the parent has imported everything; spawn would re-import per process
    q = ctx.Queue()
    barrier = ctx.Barrier(6)
    procs = [ctx.Process(target=_open_many, args=(str(tmp_path), 30, barrier, q)) for _ in range(6)]
    for p in procs:
        p.start()
    fails = [f for _ in procs for f in q.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert fails == []
    for r in (0, 29):
        path = tmp_path / f"new-{r}.sqlite"
        with Ledger.open(path, Prices(RAW)) as led:
            assert led.rows() == []
        db = sqlite3.connect(path)
        assert dict(db.execute("SELECT key, value FROM ledger_info")) == {"format": "ragfix-ledger", "version": "1"}
        db.close()


def test_lock_contention_is_reported_as_lock_contention(tmp_path):
    path = tmp_path / "l.sqlite"
    Ledger(path, Prices(RAW)).close()
    hold = sqlite3.connect(path, isolation_level=None)
    hold.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    try:
        t0 = time.perf_counter()
        with pytest.raises(StoreLockedError, match=r"database is locked by another writer after 0\.[0-9] s"):
            Ledger(path, Prices(RAW), busy_timeout_s=0.3)
        assert time.perf_counter() - t0 < 5
        # a new file whose creator holds the lock: still lock contention, never "not an SQLite database"
        fresh = tmp_path / "fresh.sqlite"
        h2 = sqlite3.connect(fresh, isolation_level=None)
        h2.execute("BEGIN EXCLUSIVE")
        h2.execute("CREATE TABLE x (a)")
        with pytest.raises(StoreLockedError, match="locked by another writer"):
            Ledger(fresh, Prices(RAW), busy_timeout_s=0.3)
        h2.execute("ROLLBACK")
        h2.close()
    finally:
        hold.execute("ROLLBACK")
        hold.close()
    with Ledger(path, Prices(RAW)) as led:  # released: opens and writes
        led.record("intent", "api-llm", tokens_in=1)
    with pytest.raises(LedgerFormatError, match="not an SQLite database"):
        (tmp_path / "t.txt").write_text("plain text, not a database " * 50)
        Ledger(tmp_path / "t.txt", Prices(RAW))
