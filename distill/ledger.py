"""Attribution ledger: every LLM or specialist call, tagged with the task it served, priced.

Failure mode: Single-LLM Overspend (V). One frontier LLM ends up scoring relevance, checking
faithfulness and classifying intents, and the bill says only "LLM". The ledger records, per call,
``task``, ``model``, ``kind`` (``llm`` | ``specialist``), tokens in and out, wall and CPU seconds,
and the cost in USD from a price table (:class:`Prices`: ``configs/prices.yaml`` via
``registry.load_prices()``, any YAML file via :meth:`Prices.load`, or a dict):

- ``pricing="tokens"``: ``tokens_in * input_per_mtok_usd + tokens_out * output_per_mtok_usd`` (/1e6)
  of ``priced_as`` (default: ``model``) in ``prices.llms``; a model missing there is an error
  (:class:`PriceMissingError`), never a silent zero.
- ``pricing="compute"``: ``cpu_s * cpu_core_hour_usd / 3600 + gpu_s * gpu_hour_usd / 3600`` --
  what a self-hosted model (a specialist, or a local LLM) costs on the hardware it ran on.

:meth:`Ledger.by_task` gives spend per task; :meth:`Ledger.savings` projects what routing each
task's LLM calls to its specialist would cost, from the specialist calls the ledger has measured
for that task. ``ragfix report cost --ledger FILE`` prints both (:mod:`bench.report.cost`).

Storage: SQLite opened by :func:`monitor.sqlite_store.connect` (WAL, ``synchronous=FULL``: a priced
row is on disk when :meth:`Ledger.record` returns; a crash keeps every committed row), one ``calls``
table and a ``ledger_info`` table whose ``format``/``version`` rows let :class:`Ledger` refuse a
file that is not a ledger (:class:`LedgerFormatError`) rather than write into it.

Concurrency: one :class:`Ledger` may be shared by threads (one connection behind a lock: 8 threads x
300 ``record`` calls with ``synchronous=FULL`` on a shared 2-core VM ran at 550-650 rows/s, against
260-280 with a connection per thread, which contend through SQLite's sleeping busy handler), and any
number of processes may open one file, new or not: the
schema is created inside ``BEGIN IMMEDIATE`` so exactly one creator writes it. A writer that waits
longer than ``busy_timeout_s`` raises :class:`monitor.sqlite_store.StoreLockedError` ("database
is locked by another writer after N s"), never a format error.

Leaves out: cached-token discounts, batch-API discounts, currency conversion, per-user budgets.

Example::

    prices = Prices.load("configs/prices.yaml")  # or Prices({...}) / registry.load_prices()
    with Ledger("runs/ledger.sqlite", prices) as led:
        with led.track("intent", "intent-clinc150", kind="specialist"):
            model.predict(texts)
        led.record("intent", "gpt-4o-mini", kind="llm", tokens_in=812, tokens_out=4, wall_s=0.9)
        print(led.by_task())
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from monitor.sqlite_store import DEFAULT_BUSY_TIMEOUT_S, StoreLockedError, connect, is_lock_error, write_transaction

__all__ = ["Ledger", "Prices", "CallRecord", "LedgerFormatError", "PriceMissingError", "StoreLockedError", "KINDS",
           "PRICINGS", "LEDGER_FORMAT", "LEDGER_VERSION"]

KINDS = ("llm", "specialist")
PRICINGS = ("tokens", "compute")
LEDGER_FORMAT = "ragfix-ledger"
LEDGER_VERSION = 1


class LedgerFormatError(ValueError):
    """The file exists but is not a ragfix ledger (or is one of another version)."""


class PriceMissingError(KeyError):
    """A call asked for token pricing of a model that ``prices.yaml`` does not list."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Prices:
    """USD per million tokens per LLM and USD per core-/GPU-hour: a dict, or a YAML file via :meth:`load`."""

    def __init__(self, raw: dict, source: str = "<dict>") -> None:
        self.source = source
        try:
            self.cpu_core_hour_usd = float(raw["compute"]["cpu_core_hour_usd"])
            self.gpu_hour_usd = float(raw["compute"].get("gpu_hour_usd", "nan"))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: needs compute.cpu_core_hour_usd (USD per core-hour)") from None
        self.llms: dict[str, dict] = dict(raw.get("llms") or {})
        for name, p in self.llms.items():
            for k in ("input_per_mtok_usd", "output_per_mtok_usd"):
                if not isinstance(p, dict) or not isinstance(p.get(k), (int, float)):
                    raise ValueError(f"{source}: llms.{name}.{k} must be a number (USD per million tokens)")
        self.raw = raw

    @classmethod
    def load(cls, path: Path | str) -> "Prices":
        """The price table in YAML file ``path`` (the project's: ``registry.load_prices()``); FileNotFoundError if missing."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: price table not found")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a YAML mapping with 'compute' and 'llms'")
        return cls(raw, str(path))

    def token_cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        if model not in self.llms:
            raise PriceMissingError(f"no token price for model {model!r} in {self.source}; priced models: "
                                    f"{', '.join(sorted(self.llms)) or '(none)'}. Add it under llms:, or record the call "
                                    "with pricing='compute' (self-hosted) or priced_as=<a listed model>")
        p = self.llms[model]
        return (tokens_in * p["input_per_mtok_usd"] + tokens_out * p["output_per_mtok_usd"]) / 1e6

    def compute_cost(self, cpu_s: float, gpu_s: float = 0.0) -> float:
        cost = cpu_s * self.cpu_core_hour_usd / 3600.0
        if gpu_s:
            if self.gpu_hour_usd != self.gpu_hour_usd:  # NaN: not configured
                raise PriceMissingError(f"{self.source}: compute.gpu_hour_usd is missing, needed to price {gpu_s:.3f} GPU-seconds")
            cost += gpu_s * self.gpu_hour_usd / 3600.0
        return cost


@dataclass
class CallRecord:
    """One call; filled in by :meth:`Ledger.track` (seconds measured) or passed to :meth:`Ledger.record`."""

    task: str
    model: str
    kind: str = "llm"
    tokens_in: int = 0
    tokens_out: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float = 0.0
    pricing: str | None = None
    priced_as: str | None = None
    meta: dict = field(default_factory=dict)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    cpu_s REAL NOT NULL,
    gpu_s REAL NOT NULL,
    pricing TEXT NOT NULL,
    priced_as TEXT NOT NULL,
    cost_usd REAL NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_task ON calls(task, kind);
"""


class Ledger:
    """SQLite (WAL) ledger of priced calls. ``Ledger(path, prices)``; ``Ledger.open(path)`` only reads an existing one.

    Args:
        path: the SQLite file (created when missing, unless ``create=False``).
        prices: a :class:`Prices` (``registry.load_prices()`` for ``configs/prices.yaml``); needed to
            record a call (a ValueError says so when missing), not to read a ledger. Cost is computed
            at record time and stored, so a later price change does not rewrite history.
        create: create the file and schema when missing (``False``: :meth:`open`, reports).
        busy_timeout_s: how long a write waits for another writer's lock before
            :class:`~monitor.sqlite_store.StoreLockedError`.

    Safe to share across threads and processes (see the module docstring).
    """

    def __init__(self, path: Path | str, prices: Prices | None = None, create: bool = True,
                 busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ledger file not found")
        self.prices = prices
        self.busy_timeout_s = float(busy_timeout_s)
        # One connection behind one lock (not a connection per thread): SQLite admits one writer per
        # file anyway, and a Python lock hands the turn over at once where per-thread connections
        # contend through SQLite's sleeping busy handler (about 2x slower, module docstring); close()
        # also has one connection to close, whichever threads used it.
        self._lock = threading.RLock()
        try:
            self._db = connect(self.path, busy_timeout_s=self.busy_timeout_s, synchronous="FULL",
                               check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            if is_lock_error(exc):  # pragma: no cover - connect() turns these into StoreLockedError
                raise
            raise LedgerFormatError(f"{self.path}: not a ragfix ledger (not an SQLite database: {exc})") from None
        try:
            self._check_or_create(create)
        except BaseException:
            self._db.close()
            raise

    def _check_or_create(self, create: bool) -> None:
        db = self._db
        if create:
            # subtle: the schema is created inside BEGIN IMMEDIATE, after re-reading the table list under
            # the write lock, so of N processes creating one new file exactly one creates it and the
            # others see a complete ledger; a file with other tables is never written into.
            with write_transaction(db, self.path, self.busy_timeout_s):
                names = self._tables()
                if not names:
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            db.execute(stmt)
                    db.executemany("INSERT OR IGNORE INTO ledger_info VALUES (?, ?)",
                                   [("format", LEDGER_FORMAT), ("version", str(LEDGER_VERSION))])
        names = self._tables()
        if not names:
            raise LedgerFormatError(f"{self.path}: empty database, not a ragfix ledger")
        info = dict(db.execute("SELECT key, value FROM ledger_info")) if "ledger_info" in names else {}
        if info.get("format") != LEDGER_FORMAT or "calls" not in names:
            raise LedgerFormatError(f"{self.path}: an SQLite database but not a ragfix ledger "
                                    f"(tables: {', '.join(sorted(names))}); pass a file written by distill.ledger.Ledger")
        if info.get("version") != str(LEDGER_VERSION):
            raise LedgerFormatError(f"{self.path}: ledger version {info.get('version')}, this code reads {LEDGER_VERSION}")

    def _tables(self) -> set[str]:
        try:
            return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.OperationalError as exc:
            if is_lock_error(exc):
                raise StoreLockedError(f"{self.path}: database is locked by another writer after "
                                       f"{self.busy_timeout_s:.1f} s: {exc}") from None
            raise

    @classmethod
    def open(cls, path: Path | str, prices: Prices | None = None) -> "Ledger":
        """Open an existing ledger (for reports); never creates a file."""
        return cls(path, prices, create=False)

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _prices(self) -> Prices:
        if self.prices is None:
            raise ValueError(f"{self.path}: this Ledger has no prices, so it cannot price a call; pass "
                             "prices=Prices.load(path), Prices({...}) or registry.load_prices() to Ledger(...)")
        return self.prices

    def cost(self, rec: CallRecord) -> tuple[str, str, float]:
        """(pricing, priced_as, USD) for a record, by the rules in the module docstring."""
        if rec.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {rec.kind!r}")
        pricing = rec.pricing or ("tokens" if rec.kind == "llm" else "compute")
        if pricing not in PRICINGS:
            raise ValueError(f"pricing must be one of {PRICINGS}, got {pricing!r}")
        if pricing == "tokens":
            name = rec.priced_as or rec.model
            return pricing, name, self._prices().token_cost(name, rec.tokens_in, rec.tokens_out)
        return pricing, "compute", self._prices().compute_cost(rec.cpu_s, rec.gpu_s)

    def record(self, task: str, model: str, kind: str = "llm", tokens_in: int = 0, tokens_out: int = 0,
               wall_s: float = 0.0, cpu_s: float = 0.0, gpu_s: float = 0.0, pricing: str | None = None,
               priced_as: str | None = None, meta: dict | None = None) -> float:
        """Store one call and return its cost in USD."""
        rec = CallRecord(task, model, kind, tokens_in, tokens_out, wall_s, cpu_s, gpu_s, pricing, priced_as, meta or {})
        return self.add(rec)

    def add(self, rec: CallRecord) -> float:
        if not isinstance(rec.task, str) or not rec.task.strip():
            raise ValueError(f"task must be a non-empty str naming what the call served, got {rec.task!r}")
        for k in ("tokens_in", "tokens_out", "wall_s", "cpu_s", "gpu_s"):
            v = getattr(rec, k)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{k} must be a number >= 0, got {v!r}")
        pricing, priced_as, usd = self.cost(rec)
        with self._lock, write_transaction(self._db, self.path, self.busy_timeout_s):
            self._db.execute(
                "INSERT INTO calls (ts, task, model, kind, tokens_in, tokens_out, wall_s, cpu_s, gpu_s, pricing, priced_as,"
                " cost_usd, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), rec.task, rec.model, rec.kind, int(rec.tokens_in), int(rec.tokens_out), float(rec.wall_s),
                 float(rec.cpu_s), float(rec.gpu_s), pricing, priced_as, usd, json.dumps(rec.meta)))
        return usd

    @contextmanager
    def track(self, task: str, model: str, kind: str = "specialist", **kwargs) -> Iterator[CallRecord]:
        """Time a block (wall: ``perf_counter``; CPU: ``process_time``, all threads) and record it on exit.

        Set ``rec.tokens_in`` / ``rec.tokens_out`` (or ``rec.meta``) inside the block; a block that raises
        records nothing.
        """
        rec = CallRecord(task, model, kind, **kwargs)
        w0, c0 = time.perf_counter(), time.process_time()
        yield rec
        rec.wall_s = time.perf_counter() - w0
        rec.cpu_s = time.process_time() - c0
        self.add(rec)

    def rows(self) -> list[dict]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM calls ORDER BY id")
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def by_task(self) -> list[dict]:
        """Per (task, kind, model, priced_as): calls, tokens, seconds, USD, USD per 1k calls."""
        with self._lock:
            rows = self._db.execute(
                "SELECT task, kind, model, priced_as, COUNT(*), SUM(tokens_in), SUM(tokens_out), SUM(wall_s), SUM(cpu_s),"
                " SUM(cost_usd) FROM calls GROUP BY task, kind, model, priced_as ORDER BY task, kind, model").fetchall()
        out = []
        for task, kind, model, priced_as, n, tin, tout, wall, cpu, usd in rows:
            out.append({"task": task, "kind": kind, "model": model, "priced_as": priced_as, "calls": n, "tokens_in": tin,
                        "tokens_out": tout, "wall_s": wall, "cpu_s": cpu, "usd": usd, "usd_per_1k": 1000 * usd / n})
        return out

    def savings(self) -> list[dict]:
        """Per task: LLM spend, and the cost of the same number of calls at the measured specialist rate.

        ``specialist_usd_per_call`` is the mean cost of the task's recorded specialist calls; a task with
        LLM calls but no specialist measurement gets ``None`` (cannot project) rather than a guess.
        """
        with self._lock:
            rows = self._db.execute("SELECT task, kind, COUNT(*), SUM(cost_usd) FROM calls GROUP BY task, kind").fetchall()
        agg: dict[str, dict] = {}
        for task, kind, n, usd in rows:
            agg.setdefault(task, {})[kind] = (n, usd)
        out = []
        for task in sorted(agg):
            n_llm, llm_usd = agg[task].get("llm", (0, 0.0))
            n_sp, sp_usd = agg[task].get("specialist", (0, 0.0))
            per_call = sp_usd / n_sp if n_sp else None
            routed = per_call * n_llm if per_call is not None else None
            out.append({"task": task, "llm_calls": n_llm, "llm_usd": llm_usd, "specialist_calls": n_sp,
                        "specialist_usd_per_call": per_call, "routed_usd": routed,
                        "saving_usd": (llm_usd - routed) if routed is not None else None,
                        "cost_ratio": (llm_usd / routed) if routed else None})
        return out
