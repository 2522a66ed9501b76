"""Opening the project's SQLite stores one way: WAL, one busy timeout, an explicit durability level.

Every piece of persistent state in ragfix (the attribution ledger :mod:`distill.ledger`, the
cascade's decisions :mod:`cascade.cascade`, the context-rot prompt cache
:mod:`generate.context_rot`) is an SQLite file that several threads and processes may open at
once. This module is the one place that says how such a file is opened, so the three agree:

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers; a
  crash keeps every committed transaction.
- a **busy timeout** (default :data:`DEFAULT_BUSY_TIMEOUT_S`): a writer waits that long for
  another writer's lock before giving up; giving up raises :class:`StoreLockedError`
  ("database is locked by another writer after N s"), never a misleading "not a database".
- ``synchronous``: ``FULL`` (fsync the WAL at every commit) for stores where a lost row costs
  money (a priced call, a paid expensive-stage decision); ``NORMAL`` where a lost row only costs
  a recomputation (a cache). Both are corruption-free after a crash; ``NORMAL`` may lose the last
  commits on power loss.
- ``isolation_level=None``: no implicit transactions; writes go through :func:`write_transaction`
  (``BEGIN IMMEDIATE``: the write lock is taken *before* anything is read, so a read-then-write
  such as "next sequence number" or "create the schema if missing" is atomic across processes).

Lives in ``monitor`` (the bottom package every fix package may import). Standard library only.

Leaves out: connection pooling, network filesystems (SQLite's locking is not reliable on NFS),
schema migrations (each store checks its own format marker).

Example::

    db = connect("runs/state.sqlite", synchronous="FULL")
    with write_transaction(db, "runs/state.sqlite"):
        db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)")
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["connect", "write_transaction", "is_lock_error", "StoreLockedError", "DEFAULT_BUSY_TIMEOUT_S", "SYNCHRONOUS"]

DEFAULT_BUSY_TIMEOUT_S = 60.0
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


class StoreLockedError(TimeoutError):
    """Another connection held the SQLite write lock for longer than the busy timeout."""


def is_lock_error(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite's SQLITE_BUSY / SQLITE_LOCKED (lock contention), not a broken file."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return True
    msg = str(exc).lower()
    return "database is locked" in msg or "database table is locked" in msg or "database is busy" in msg


def _locked(path: Path | str, waited_s: float, exc: BaseException) -> StoreLockedError:
    return StoreLockedError(f"{path}: database is locked by another writer after {waited_s:.1f} s: {exc}; "
                            "retry when the other writer is done, or open the store with a longer busy timeout")


def _until_unlocked(step, path, busy_timeout_s: float, t0: float | None = None):
    """Run ``step()`` again while SQLite says the file is locked, up to ``busy_timeout_s`` from ``t0``."""
    t0 = time.monotonic() if t0 is None else t0
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not is_lock_error(exc):
                raise
            if time.monotonic() - t0 >= busy_timeout_s:
                raise _locked(path, time.monotonic() - t0, exc) from None
            time.sleep(0.01)


def connect(path: Path | str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, synchronous: str = "FULL",
            check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if missing) an SQLite file in WAL mode with the given busy timeout and durability.

    Args:
        path: the database file; its folder must exist.
        busy_timeout_s: seconds to wait for another connection's lock (> 0).
        synchronous: one of :data:`SYNCHRONOUS`; ``FULL`` where a lost row costs money.
        check_same_thread: passed to :func:`sqlite3.connect`; ``False`` only for a connection the
            caller serialises itself (e.g. behind a ``threading.Lock``).

    Raises:
        StoreLockedError: another writer held the file past ``busy_timeout_s`` (e.g. while creating it).
        sqlite3.DatabaseError: the file is not an SQLite database (callers turn this into their own
            format error).
    """
    if not (isinstance(busy_timeout_s, (int, float)) and busy_timeout_s > 0):
        raise ValueError(f"busy_timeout_s must be a number of seconds > 0, got {busy_timeout_s!r}")
    sync = str(synchronous).upper()
    if sync not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, got {synchronous!r}")
    t0 = time.monotonic()
    db = sqlite3.connect(str(path), timeout=float(busy_timeout_s), isolation_level=None,
                         check_same_thread=check_same_thread)
    try:
        # subtle: switching a new file to WAL needs a lock that the busy handler does not always wait
        # for (SQLite may return SQLITE_BUSY at once), so retry up to the same deadline ourselves.
        mode = _until_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone()[0], path, busy_timeout_s, t0)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{path}: could not switch to WAL (journal_mode is {mode}); "
                                           "is the file on a filesystem without shared memory (e.g. NFS)?")
        db.execute(f"PRAGMA synchronous={sync}")
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection, path: Path | str = "<sqlite>",
                      busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` if the block raises) on a :func:`connect` connection.

    The write lock is taken before the block runs, so everything the block reads is still true when
    it commits, whoever else writes the file. Waiting longer than ``busy_timeout_s`` for the lock
    raises :class:`StoreLockedError` *before* the block runs.
    """
    _until_unlocked(lambda: db.execute("BEGIN IMMEDIATE"), path, busy_timeout_s)
    try:
        yield db
    except BaseException:
        if db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
