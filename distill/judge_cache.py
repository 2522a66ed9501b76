"""Judge cache: every (judge, prompt, decoding, query, document) verdict paid for once, kept, and accounted.

Failure mode: Eval-Spend Overrun (IV). A dashboard refresh re-asks the judge about the same
(query, document) pairs under the same prompt and model, so spend grows as pairs x refreshes.
Mechanism: a content-addressed SQLite store (WAL, via :mod:`monitor.sqlite_store`) keyed by the
SHA-256 of everything that can change a verdict -- the judge model's fingerprint, the task, the
prompt's version *and* the SHA-256 of its template text, the decoding settings, and the SHA-256 of
the query and of the document text (:meth:`JudgeSpec.key`). A key that differs in any of these is a
different verdict; nothing expires by age. ``ragfix bench judge-spend`` measures the saving
(30 daily refreshes, 5% new pairs a day, one prompt edit).

Works for any scorer behind the judge contract (:class:`JudgeScorer`: a :class:`JudgeSpec` and
``score_batch(pairs) -> list[Scored]``): :class:`LLMJudgeScorer` wraps :class:`distill.judge.LLMJudge`,
:class:`PairScorerJudge` wraps anything with ``score_pairs(pairs) -> scores`` (``rerank``'s
``CrossEncoderReranker`` / ``RerankEngine``) with a verdict threshold.

Crash and concurrency guarantee (what ``tests/unit/test_judge_cache.py`` checks with SIGKILL and 8
concurrent writer processes):

- A verdict is *committed* when :meth:`JudgeCache.refresh` has written it (``synchronous=FULL``: on
  disk at commit). A kill -9 at any moment loses no committed verdict.
- Before the judge is called, the pair's row is *reserved* (state ``pending``, owner, lease) in a
  ``BEGIN IMMEDIATE`` transaction, and its ``attempts`` counter is incremented in that same
  transaction. So every paid call is counted before it is paid, and no two live writers (threads or
  processes) ever call the judge for the same key: the second waits for the first's verdict.
- The one re-payment possible: a writer killed *after* reserving a batch and *before* committing its
  verdicts leaves those rows ``pending``; the judge may or may not have charged for them. When the
  owner is seen dead (same host, its pid gone) or its lease (``lease_s``) has run out, the next
  refresh re-claims and re-pays them. So a kill re-pays at most the batch that was in flight
  (``batch_size`` pairs; 1 for the LLM judge by default), never a committed pair, and ``attempts``
  says exactly which pairs were paid twice.

Invalidation: :meth:`JudgeCache.invalidate` deletes only the rows matching the given task, model
fingerprint, prompt version or prompt hash. A prompt edit needs no invalidation to be correct (the
new template hash misses); invalidating only reclaims space.

Accounting: :class:`RefreshReport` per refresh (pairs, duplicates folded, hits, calls paid, calls
saved, USD paid and saved); with a :class:`distill.ledger.Ledger`, every paid call is a ledger row
(``meta.judge_cache = "miss"``) and each refresh's hits one row under task ``<task>:judge-cache``
(priced at the lookup's CPU time, ``meta`` holding ``hits``, ``calls_saved``, ``usd_saved``);
:func:`cache_savings` sums them back from any ledger.

Leaves out: sharing one cache across hosts without synchronised clocks (the lease is wall-clock),
time-to-live expiry (deliberately: verdicts do not age), storing the judge's full reply text.

Example::

    cache = JudgeCache("runs/judge-cache.sqlite", ledger=led)
    scorer = LLMJudgeScorer(judge, "relevance", model_fingerprint=sha, prices=prices, priced_as="gpt-4o-mini")
    verdicts, report = cache.refresh(scorer, [(query, passage), ...])
    print(report.hits, report.calls, report.usd_saved)
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Protocol, Sequence

from monitor.sqlite_store import DEFAULT_BUSY_TIMEOUT_S, StoreLockedError, connect, write_transaction

__all__ = ["JudgeCache", "JudgeSpec", "Scored", "RefreshReport", "JudgeScorer", "LLMJudgeScorer", "PairScorerJudge",
           "JudgeCacheFormatError", "cache_savings", "prompt_sha256", "text_sha256", "CACHE_FORMAT", "CACHE_VERSION"]

CACHE_FORMAT = "ragfix-judge-cache"
CACHE_VERSION = 1


class JudgeCacheFormatError(ValueError):
    """The file exists but is not a ragfix judge cache (or one of another version)."""


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_sha256(template: Mapping) -> str:
    """SHA-256 of a prompt template (a task entry of ``judge_prompts.yaml``: system, user, answers, ...), key order free."""
    return text_sha256(json.dumps(template, sort_keys=True, ensure_ascii=False, default=str))


@dataclass(frozen=True)
class JudgeSpec:
    """Everything about the judge that can change a verdict; two specs that differ never share a verdict.

    Args:
        task: what is judged (``relevance``, ``faithfulness``, ...).
        model_fingerprint: the judge's weights (e.g. ``registry.weights_sha256``) or API model id + snapshot date.
        prompt_version: the prompt's version string (``judge_prompts.yaml`` ``version``; ``""`` for a promptless scorer).
        prompt_sha256: :func:`prompt_sha256` of the template actually used (catches an edit without a version bump).
        decoding: decoding settings (``max_new_tokens``, temperature, ...) or a scorer's threshold/max_length.
    """

    task: str
    model_fingerprint: str
    prompt_version: str = ""
    prompt_sha256: str = ""
    decoding: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("task", "model_fingerprint"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"JudgeSpec.{name} must be a non-empty str, got {v!r}")

    def decoding_json(self) -> str:
        return json.dumps(dict(self.decoding), sort_keys=True, default=str)

    def key(self, query: str, document: str) -> str:
        """The content address of one verdict: SHA-256 over the spec fields and the two text hashes."""
        ident = [self.task, self.model_fingerprint, self.prompt_version, self.prompt_sha256, self.decoding_json(),
                 text_sha256(query), text_sha256(document)]
        return text_sha256(json.dumps(ident))


class Scored(NamedTuple):
    """One verdict: ``label`` (1/0, an intent name, or None if unparseable), the raw score if any, its price."""

    label: int | str | None
    score: float | None
    tokens_in: int
    tokens_out: int
    cpu_s: float
    usd: float


class JudgeScorer(Protocol):
    """The judge contract the cache calls: a :class:`JudgeSpec` and a batch scorer."""

    spec: JudgeSpec
    model: str  # the name a ledger row carries
    kind: str  # ledger kind: "llm" or "specialist"
    batch_size: int

    def score_batch(self, pairs: Sequence[tuple[str, str]]) -> list[Scored]: ...

    def ledger_kwargs(self) -> dict: ...


class LLMJudgeScorer:
    """:class:`distill.judge.LLMJudge` behind the judge contract, one call per pair.

    Args:
        judge: the LLMJudge (its ``prompts`` give the version and the template hashed into the key).
        task: ``relevance`` or ``faithfulness``.
        model_fingerprint: the LLM's weights digest (``registry.weights_sha256(path)``); default the backend's name.
        prices: a :class:`distill.ledger.Prices` to price each call's measured tokens as ``priced_as``.
        fields: the template's two field names for (query, document) (default ``("query", "passage")``).
    """

    kind = "llm"

    def __init__(self, judge, task: str = "relevance", model_fingerprint: str | None = None, prices=None,
                 priced_as: str = "gpt-4o-mini", fields: tuple[str, str] = ("query", "passage"), batch_size: int = 1) -> None:
        if task not in judge.prompts["tasks"]:
            raise ValueError(f"task {task!r} not in the judge's prompts (has {sorted(judge.prompts['tasks'])})")
        template = judge.prompts["tasks"][task]
        self.judge, self.task, self.fields, self.prices, self.priced_as = judge, task, fields, prices, priced_as
        self.model = str(getattr(judge.backend, "name", type(judge.backend).__name__))
        self.batch_size = int(batch_size)
        self.spec = JudgeSpec(task, model_fingerprint or self.model, str(judge.prompts["version"]), prompt_sha256(template),
                              {"max_new_tokens": int(template.get("max_new_tokens", 8)), "do_sample": False})

    def score_batch(self, pairs: Sequence[tuple[str, str]]) -> list[Scored]:
        out = []
        for q, d in pairs:
            v = self.judge.judge(self.task, **{self.fields[0]: q, self.fields[1]: d})
            usd = self.prices.token_cost(self.priced_as, v.prompt_tokens, v.completion_tokens) if self.prices else 0.0
            out.append(Scored(v.label, None, v.prompt_tokens, v.completion_tokens, v.cpu_s, usd))
        return out

    def ledger_kwargs(self) -> dict:
        return {"pricing": "tokens", "priced_as": self.priced_as}


class PairScorerJudge:
    """Any ``score_pairs(pairs) -> scores`` model (a cross-encoder teacher) as a judge: label = score > threshold.

    Args:
        ranker: e.g. ``registry.load_cross_encoder("reranker-l6")`` or a ``rerank.RerankEngine``.
        model_fingerprint: the weights digest (``registry.weights_sha256``).
        threshold: verdict 1 when the score is above it (on the scale ``score_pairs`` returns).
        prices: :class:`distill.ledger.Prices`; each pair costs its share of the batch's CPU seconds.
    """

    kind = "specialist"

    def __init__(self, ranker, model_fingerprint: str, threshold: float, prices=None, task: str = "relevance",
                 batch_size: int = 32) -> None:
        self.ranker, self.threshold, self.prices = ranker, float(threshold), prices
        self.model = str(getattr(ranker, "name", type(ranker).__name__))
        self.batch_size = int(batch_size)
        self.spec = JudgeSpec(task, model_fingerprint, "", "", {"threshold": self.threshold,
                                                               "max_length": getattr(ranker, "max_length", None)})

    def score_batch(self, pairs: Sequence[tuple[str, str]]) -> list[Scored]:
        c0 = time.process_time()
        scores = [float(s) for s in self.ranker.score_pairs(list(pairs))]
        cpu = (time.process_time() - c0) / max(1, len(pairs))
        usd = self.prices.compute_cost(cpu) if self.prices else 0.0
        return [Scored(int(s > self.threshold), s, 0, 0, cpu, usd) for s in scores]

    def ledger_kwargs(self) -> dict:
        return {"pricing": "compute"}


class RefreshReport(NamedTuple):
    """One :meth:`JudgeCache.refresh`: ``calls`` is what was paid now; ``calls_saved = pairs - calls``."""

    pairs: int
    unique: int
    hits: int
    calls: int
    recovered: int  # pending rows of a dead / expired writer re-claimed (each possibly paid twice)
    usd_paid: float
    usd_saved: float

    @property
    def calls_saved(self) -> int:
        return self.pairs - self.calls

    @property
    def hit_rate(self) -> float:
        return self.hits / self.unique if self.unique else 0.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL,
    decoding TEXT NOT NULL,
    query_sha256 TEXT NOT NULL,
    doc_sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL,
    label TEXT,
    score REAL,
    tokens_in INTEGER,
    tokens_out INTEGER,
    cpu_s REAL,
    usd REAL,
    created REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS verdicts_spec ON verdicts(task, model_fingerprint, prompt_version, prompt_sha256);
"""

_CHUNK = 500  # keys per "IN (...)" query: under SQLite's default 999-variable limit


def _encode_label(label) -> str | None:
    return None if label is None else json.dumps(label)


def _decode_label(raw):
    return None if raw is None else json.loads(raw)


class JudgeCache:
    """The persistent verdict store. ``JudgeCache(path)``; share one instance across threads, or open one per process.

    Args:
        path: SQLite file (created with its schema when missing; a file that is not a judge cache raises
            :class:`JudgeCacheFormatError` and is never written).
        ledger: optional :class:`distill.ledger.Ledger` receiving paid calls and per-refresh savings.
        lease_s: how long a reservation holds against writers on other hosts (same-host writers are
            checked by pid); a reservation older than this is taken over.
        busy_timeout_s: wait for another writer's lock before :class:`~monitor.sqlite_store.StoreLockedError`.
        poll_s: how often a refresh re-reads keys another live writer is judging.
    """

    def __init__(self, path: Path | str, ledger=None, lease_s: float = 600.0,
                 busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, poll_s: float = 0.02) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0 seconds, got {lease_s!r}")
        self.path, self.ledger, self.lease_s, self.poll_s = Path(path), ledger, float(lease_s), float(poll_s)
        self.busy_timeout_s = float(busy_timeout_s)
        self.host = socket.gethostname()
        self._lock = threading.RLock()
        try:
            self._db = connect(self.path, busy_timeout_s=self.busy_timeout_s, synchronous="FULL", check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise JudgeCacheFormatError(f"{self.path}: not a ragfix judge cache (not an SQLite database: {exc})") from None
        try:
            with write_transaction(self._db, self.path, self.busy_timeout_s):
                names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if not names:
                    for stmt in _SCHEMA.split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                    self._db.executemany("INSERT INTO cache_info VALUES (?, ?)",
                                         [("format", CACHE_FORMAT), ("version", str(CACHE_VERSION))])
            names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            info = dict(self._db.execute("SELECT key, value FROM cache_info")) if "cache_info" in names else {}
            if info.get("format") != CACHE_FORMAT or "verdicts" not in names:
                raise JudgeCacheFormatError(f"{self.path}: an SQLite database but not a ragfix judge cache "
                                            f"(tables: {', '.join(sorted(names))}); pass a new file or one written by JudgeCache")
            if info.get("version") != str(CACHE_VERSION):
                raise JudgeCacheFormatError(f"{self.path}: judge cache version {info.get('version')}, this code reads {CACHE_VERSION}")
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> "JudgeCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading -------------------------------------------------------------------------------
    def _done_rows(self, keys: Sequence[str]) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                chunk = list(keys[i:i + _CHUNK])
                q = f"SELECT key, label, score, tokens_in, tokens_out, cpu_s, usd FROM verdicts WHERE state='done' AND key IN ({','.join('?' * len(chunk))})"
                for k, label, score, tin, tout, cpu, usd in self._db.execute(q, chunk):
                    out[k] = Scored(_decode_label(label), score, tin or 0, tout or 0, cpu or 0.0, usd or 0.0)
        return out

    def get(self, spec: JudgeSpec, pairs: Sequence[tuple[str, str]]) -> list[Scored | None]:
        """Committed verdicts for ``pairs`` under ``spec`` (None where there is none); never calls a judge."""
        keys = [spec.key(q, d) for q, d in pairs]
        done = self._done_rows(list(dict.fromkeys(keys)))
        return [done.get(k) for k in keys]

    def attempts(self) -> dict[str, int]:
        """``{key: times the judge was called for it}`` over the whole store (1 everywhere unless a writer died mid-call)."""
        with self._lock:
            return dict(self._db.execute("SELECT key, attempts FROM verdicts"))

    def stats(self) -> dict:
        """Rows per state and per (task, model, prompt version); USD stored."""
        with self._lock:
            by_state = dict(self._db.execute("SELECT state, COUNT(*) FROM verdicts GROUP BY state"))
            groups = [dict(zip(("task", "model_fingerprint", "prompt_version", "prompt_sha256", "rows", "usd"), r)) for r in
                      self._db.execute("SELECT task, model_fingerprint, prompt_version, prompt_sha256, COUNT(*), SUM(usd)"
                                       " FROM verdicts GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4")]
        return {"done": by_state.get("done", 0), "pending": by_state.get("pending", 0), "groups": groups}

    # -- writing -------------------------------------------------------------------------------
    def invalidate(self, task: str | None = None, model_fingerprint: str | None = None, prompt_version: str | None = None,
                   prompt_sha256: str | None = None) -> int:
        """Delete the verdicts matching every given field (at least one); returns how many rows went."""
        conds = {"task": task, "model_fingerprint": model_fingerprint, "prompt_version": prompt_version,
                 "prompt_sha256": prompt_sha256}
        conds = {k: v for k, v in conds.items() if v is not None}
        if not conds:
            raise ValueError("invalidate needs at least one of task, model_fingerprint, prompt_version, prompt_sha256 "
                             "(refusing to empty the whole cache; delete the file for that)")
        where = " AND ".join(f"{k} = ?" for k in conds)
        with self._lock, write_transaction(self._db, self.path, self.busy_timeout_s):
            return self._db.execute(f"DELETE FROM verdicts WHERE {where}", list(conds.values())).rowcount

    def _owner_alive(self, owner: str | None, lease_until: float | None, now: float) -> bool:
        if not owner:
            return False
        host, _, rest = owner.partition(":")
        pid = int(rest.split(":", 1)[0]) if rest.split(":", 1)[0].isdigit() else -1
        if host == self.host and pid > 0:
            if pid == os.getpid():
                return True  # another thread of this process: alive while we are
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass  # exists, another user's
        return lease_until is not None and lease_until > now

    def _claim(self, spec: JudgeSpec, keys: list[str], texts: dict[str, tuple[str, str]], owner: str
               ) -> tuple[list[str], list[str], int]:
        """Reserve the claimable keys (one transaction): returns (claimed, held by a live writer, recovered)."""
        claimed, held, recovered = [], [], 0
        now = time.time()
        with self._lock, write_transaction(self._db, self.path, self.busy_timeout_s):
            rows = {}
            for i in range(0, len(keys), _CHUNK):
                chunk = keys[i:i + _CHUNK]
                rows.update({r[0]: r[1:] for r in self._db.execute(
                    f"SELECT key, state, owner, lease_until FROM verdicts WHERE key IN ({','.join('?' * len(chunk))})", chunk)})
            dec = spec.decoding_json()
            for k in keys:
                r = rows.get(k)
                if r is None:
                    q, d = texts[k]
                    self._db.execute(
                        "INSERT INTO verdicts (key, task, model_fingerprint, prompt_version, prompt_sha256, decoding, query_sha256,"
                        " doc_sha256, state, owner, lease_until, attempts, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, 1, ?)",
                        (k, spec.task, spec.model_fingerprint, spec.prompt_version, spec.prompt_sha256, dec, text_sha256(q),
                         text_sha256(d), owner, now + self.lease_s, now))
                    claimed.append(k)
                elif r[0] == "done":
                    continue
                elif self._owner_alive(r[1], r[2], now):
                    held.append(k)
                else:  # subtle: a dead writer's reservation; it may have paid, so this call may be the second
                    self._db.execute("UPDATE verdicts SET owner = ?, lease_until = ?, attempts = attempts + 1 WHERE key = ?",
                                     (owner, now + self.lease_s, k))
                    claimed.append(k)
                    recovered += 1
        return claimed, held, recovered

    def _commit(self, keys: list[str], scored: list[Scored], owner: str) -> None:
        now = time.time()
        with self._lock, write_transaction(self._db, self.path, self.busy_timeout_s):
            self._db.executemany(
                "UPDATE verdicts SET state='done', owner=NULL, lease_until=NULL, label=?, score=?, tokens_in=?, tokens_out=?,"
                " cpu_s=?, usd=?, done_at=? WHERE key=? AND state='pending'",
                [(_encode_label(s.label), s.score, int(s.tokens_in), int(s.tokens_out), float(s.cpu_s), float(s.usd), now, k)
                 for k, s in zip(keys, scored)])

    def _release(self, keys: list[str], owner: str) -> None:
        """A judge call raised: give the reservation back (a later refresh retries) rather than wait out the lease."""
        try:
            with self._lock, write_transaction(self._db, self.path, self.busy_timeout_s):
                self._db.executemany("UPDATE verdicts SET owner=NULL, lease_until=0 WHERE key=? AND owner=? AND state='pending'",
                                     [(k, owner) for k in keys])
        except (sqlite3.Error, StoreLockedError):  # pragma: no cover - the original error matters more
            pass

    def refresh(self, scorer: JudgeScorer, pairs: Sequence[tuple[str, str]], batch_size: int | None = None,
                max_wait_s: float | None = None) -> tuple[list[Scored], RefreshReport]:
        """Verdicts for every pair: cached ones read, duplicates folded, the rest judged once and committed.

        Raises whatever the scorer raises (its reserved rows are released first, so a retry re-asks);
        :class:`TimeoutError` when another live writer holds a key longer than ``max_wait_s``
        (default: the cache's ``lease_s``).
        """
        spec = scorer.spec
        bs = int(batch_size or getattr(scorer, "batch_size", 1) or 1)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        c0 = time.process_time()
        keys = [spec.key(q, d) for q, d in pairs]
        texts: dict[str, tuple[str, str]] = {}
        for k, p in zip(keys, pairs):
            texts.setdefault(k, (p[0], p[1]))
        unique = list(texts)
        done = self._done_rows(unique)
        hits_at_start = len(done)
        lookup_cpu = time.process_time() - c0
        owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        todo = [k for k in unique if k not in done]
        calls, recovered, usd_paid = 0, 0, 0.0
        deadline = time.monotonic() + (max_wait_s if max_wait_s is not None else self.lease_s)
        while todo:
            waiting: list[str] = []
            for i in range(0, len(todo), bs):
                batch = todo[i:i + bs]
                claimed, held, rec = self._claim(spec, batch, texts, owner)
                waiting.extend(held)
                recovered += rec
                if claimed:
                    try:
                        scored = scorer.score_batch([texts[k] for k in claimed])
                    except BaseException:
                        self._release(claimed, owner)
                        raise
                    if len(scored) != len(claimed):
                        self._release(claimed, owner)
                        raise ValueError(f"{type(scorer).__name__}.score_batch returned {len(scored)} verdicts for "
                                         f"{len(claimed)} pairs; it must return one per pair, in order")
                    self._commit(claimed, scored, owner)
                    calls += len(claimed)
                    usd_paid += sum(s.usd for s in scored)
                    self._to_ledger(scorer, scored)
                    done.update(zip(claimed, scored))
            # keys done by another writer since our first read count as hits (they cost us nothing)
            fresh = self._done_rows([k for k in todo if k not in done])
            done.update(fresh)
            todo = [k for k in waiting if k not in done]
            if todo:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.path}: {len(todo)} pairs stayed reserved by another live writer for more "
                                       f"than {max_wait_s if max_wait_s is not None else self.lease_s:.0f} s; retry later "
                                       "or pass a larger max_wait_s")
                time.sleep(self.poll_s)
        results = [done[k] for k in keys]
        hits = len(unique) - calls
        usd_saved = sum(r.usd for r in results) - usd_paid
        report = RefreshReport(len(pairs), len(unique), hits, calls, recovered, usd_paid, usd_saved)
        if self.ledger is not None and report.calls_saved:
            self.ledger.record(f"{spec.task}:judge-cache", scorer.model, kind="specialist", pricing="compute", cpu_s=lookup_cpu,
                               meta={"judge_cache": "hits", "hits": hits, "hits_at_start": hits_at_start,
                                     "duplicates": len(pairs) - len(unique), "calls_saved": report.calls_saved,
                                     "usd_saved": usd_saved, "pairs": len(pairs)})
        return results, report

    def _to_ledger(self, scorer: JudgeScorer, scored: list[Scored]) -> None:
        if self.ledger is None:
            return
        kw = scorer.ledger_kwargs()
        for s in scored:
            self.ledger.record(scorer.spec.task, scorer.model, kind=scorer.kind, tokens_in=int(s.tokens_in),
                               tokens_out=int(s.tokens_out), cpu_s=float(s.cpu_s),
                               meta={"judge_cache": "miss", "prompt_version": scorer.spec.prompt_version}, **kw)


def cache_savings(ledger) -> dict:
    """Totals of a ledger's judge-cache rows: paid calls and USD, calls and USD saved, hit rate over pairs asked."""
    paid_calls, paid_usd, saved_calls, saved_usd, pairs = 0, 0.0, 0, 0.0, 0
    for r in ledger.rows():
        meta = json.loads(r["meta"]) if isinstance(r["meta"], str) else r["meta"]
        tag = meta.get("judge_cache")
        if tag == "miss":
            paid_calls += 1
            paid_usd += r["cost_usd"]
        elif tag == "hits":
            saved_calls += int(meta["calls_saved"])
            saved_usd += float(meta["usd_saved"])
            pairs += int(meta["pairs"])
    asked = saved_calls + paid_calls
    return {"calls_paid": paid_calls, "usd_paid": paid_usd, "calls_saved": saved_calls, "usd_saved": saved_usd,
            "hit_rate": saved_calls / asked if asked else 0.0}
