"""monitor.sqlite_store: every store opens WAL with the shared busy timeout; lock contention is named as such."""
import sqlite3

import pytest

from monitor.sqlite_store import DEFAULT_BUSY_TIMEOUT_S, StoreLockedError, connect, write_transaction


def _pragmas(db: sqlite3.Connection) -> tuple:
    return tuple(db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("journal_mode", "busy_timeout", "synchronous"))


def test_connect_sets_wal_timeout_and_durability(tmp_path):
    db = connect(tmp_path / "a.sqlite")
    assert _pragmas(db) == ("wal", int(DEFAULT_BUSY_TIMEOUT_S * 1000), 2)  # 2 = FULL
    db2 = connect(tmp_path / "b.sqlite", busy_timeout_s=1.5, synchronous="normal")
    assert _pragmas(db2) == ("wal", 1500, 1)
    with pytest.raises(ValueError, match="synchronous must be one of"):
        connect(tmp_path / "c.sqlite", synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="busy_timeout_s must be"):
        connect(tmp_path / "c.sqlite", busy_timeout_s=0)


def test_write_transaction_refuses_before_running_the_block_when_locked(tmp_path):
    path = tmp_path / "s.sqlite"
    db = connect(path, busy_timeout_s=0.2)
    db.execute("CREATE TABLE t (x)")
    hold = sqlite3.connect(path, isolation_level=None)
    hold.execute("BEGIN IMMEDIATE")
    ran = []
    with pytest.raises(StoreLockedError, match=r"s\.sqlite: database is locked by another writer after 0\.[0-9] s"):
        with write_transaction(db, path, busy_timeout_s=0.2):
            ran.append(1)
    assert ran == []
    hold.execute("ROLLBACK")
    with pytest.raises(RuntimeError):
        with write_transaction(db, path):
            db.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("rolled back")
    with write_transaction(db, path):
        db.execute("INSERT INTO t VALUES (2)")
    assert hold.execute("SELECT x FROM t").fetchall() == [(2,)]


def test_prompt_cache_is_opened_the_project_way(tmp_path):
    from generate.context_rot import PromptCache

    cache = PromptCache(tmp_path / "runs.sqlite", "tag")
    assert _pragmas(cache.db) == ("wal", int(DEFAULT_BUSY_TIMEOUT_S * 1000), 1)  # a lost row costs a rerun: NORMAL
    key = cache.key([{"role": "user", "content": "q"}], "a")
    cache.put_many([(key, -1.5, "a")])
    other = PromptCache(tmp_path / "runs.sqlite", "tag")  # a second process/handle sees the committed row
    assert other.get(key) == (-1.5, "a")
