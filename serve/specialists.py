"""``/v1/retrieve``, ``/v1/score/faithfulness``, ``/v1/classify/intent``: the first stage and the two specialists behind the server.

Each endpoint is a thin shell over the library object the benchmarks measure, built once at start
from the server's settings (``configs/serve.yaml``) and switched on by its own key:

* ``retrieve: true`` -- the first stage over the served corpus (``answer_corpus``,
  ``answer_retriever``: ``hybrid`` = BM25 + dense fused by reciprocal rank, ``bm25``, ``dense``).
  With ``answer: true`` it *is* the retriever of ``/v1/answer``'s pipeline (one index, one
  embedder); otherwise it is built the same way. Scores: :meth:`retrieval.retrievers.Retriever.search`
  (RRF for the hybrid, BM25 or cosine for one component).
* ``faithfulness: true`` -- the faithfulness specialist of the registry (``faithfulness_model``,
  default ``faithfulness``: :class:`cascade.support_features.LexicalFaithfulnessScorer`, loaded by
  :func:`registry.load_faithfulness` exactly as ``ragfix bench faithfulness`` loads it). An item's
  score is ``predict_proba`` of its answer against each passage, the best passage kept (the
  :class:`generate.gate.FaithfulnessGate` rule); ``check_claims: true`` also returns the gate's
  per-claim verdicts.
* ``intent: true`` -- the CLINC150 intent specialist (:class:`cascade.intent.IntentModel` from
  ``intent_model``, by :func:`registry.load_intent_model` as ``ragfix bench specialists`` loads
  it): label, max probability and the out-of-scope flag (max probability below the model's
  ``oos_threshold``, the label then being its ``oos_label``).

Requests of one endpoint are batched across clients by :class:`ItemBatcher` (one worker thread per
endpoint: it gathers the items of every request that arrives within ``max_wait_ms``, up to
``max_batch_items``, runs the library call once and routes each request's rows back), so a burst
of small requests shares embedding passes. Failure it guards against: without a bound and a
single owner per model, a burst of specialist calls piles onto the cores beside the reranker and
every latency grows; admission, the wait estimate and the deadline are ``/v1/rerank``'s
(:mod:`serve.app`).
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rerank.microbatch import gather
from serve.config import ServeConfig

__all__ = ["ItemBatcher", "LockedEmbedder", "lock_embedders", "find_embedder", "RetrieveRequest", "FaithfulnessItem", "FaithfulnessRequest", "IntentRequest",
           "RetrieveService", "FaithfulnessService", "IntentService", "build_retriever", "build_retrieve_service",
           "build_faithfulness_service", "build_intent_service", "resolve_intent_model"]

_STOP = object()


# ----------------------------------------------------------------------------- request bodies

class RetrieveRequest(BaseModel):
    """``{"query": ..., "top_k": 10, "return_texts": false}``."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    top_k: int = Field(default=10, ge=1)
    return_texts: bool = False

    @model_validator(mode="after")
    def _not_blank(self) -> "RetrieveRequest":
        if not self.query.strip():
            raise ValueError("query is blank; send the words to search for")
        return self


class FaithfulnessItem(BaseModel):
    """One answer to check: ``answer``, its evidence as ``passage`` or ``passages``, and optionally the ``question``."""

    model_config = ConfigDict(extra="forbid")
    question: str = ""
    passage: str | None = None
    passages: list[str] | None = None
    answer: str

    @model_validator(mode="after")
    def _evidence(self) -> "FaithfulnessItem":
        if (self.passage is None) == (self.passages is None):
            raise ValueError("give exactly one of 'passage' (one text) or 'passages' (a list)")
        texts = [self.passage] if self.passage is not None else list(self.passages or [])
        if not texts:
            raise ValueError("'passages' is empty; send at least one passage")
        if any(not t.strip() for t in texts):
            raise ValueError("a passage is blank; an answer cannot be checked against nothing")
        if not self.answer.strip():
            raise ValueError("'answer' is blank; send the answer to check")
        return self

    def evidence(self) -> list[str]:
        return [self.passage] if self.passage is not None else list(self.passages or [])


class FaithfulnessRequest(BaseModel):
    """``{"items": [{"question": ..., "passages": [...], "answer": ...}], "check_claims": false}``."""

    model_config = ConfigDict(extra="forbid")
    items: list[FaithfulnessItem] = Field(min_length=1)
    check_claims: bool = False


class IntentRequest(BaseModel):
    """``{"texts": ["book a table for two", ...]}``."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _not_blank(self) -> "IntentRequest":
        for i, t in enumerate(self.texts):
            if not t.strip():
                raise ValueError(f"texts[{i}] is blank; send the utterance to classify")
        return self


# ----------------------------------------------------------------------------- cross-request batching

@dataclass
class _Job:
    items: list
    future: Future
    t_submit: float


class ItemBatcher:
    """One worker thread runs ``fn(items) -> rows`` (one row per item) over the items of many requests.

    ``submit(items)`` returns a future of ``(rows, queue_s, compute_s)``. The worker takes the first
    queued request, waits up to ``max_wait_ms`` for more while fewer than ``max_items`` items are
    gathered (one request larger than that runs alone, whole), skips requests whose future was
    cancelled (deadline passed before they started), runs ``fn`` once and splits its rows back. If
    the merged call raises, each request is run alone so one bad request fails only itself.
    ``on_batch(n_requests, n_items, seconds)`` is called after every pass (metrics).
    ``close`` finishes what was queued and joins the worker; ``submit`` after it raises RuntimeError.
    """

    def __init__(self, fn: Callable[[list], list], name: str, max_wait_ms: float = 2.0, max_items: int = 64,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        if max_items < 1:
            raise ValueError(f"ItemBatcher {name}: max_items must be >= 1, got {max_items}")
        self.fn, self.name, self.max_wait_s, self.max_items = fn, name, max(0.0, max_wait_ms) / 1000.0, max_items
        self.on_batch = on_batch
        self.q: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.pending_items = 0
        self.sec_per_batch = 0.01  # replaced by the warm-up pass at load; passes refine it (EWMA)
        self.closed = False
        self.worker = threading.Thread(target=self._loop, name=f"ragfix-{name}-batcher", daemon=True)
        self.worker.start()

    def submit(self, items: Sequence) -> Future:
        fut: Future = Future()
        with self.lock:
            if self.closed:
                raise RuntimeError(f"ItemBatcher {self.name}: submit after close")
            self.pending_items += len(items)
            self.q.put(_Job(list(items), fut, time.perf_counter()))
        return fut

    def wait_estimate_s(self, extra_items: int = 0) -> float:
        """Seconds until a request of ``extra_items`` items queued now is done: the passes ahead of it, plus its own."""
        with self.lock:
            items = self.pending_items + extra_items
        return (items // self.max_items + 1) * self.sec_per_batch

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        return gather(self.q, first, lambda j: len(j.items), self.max_items, self.max_wait_s, _STOP)

    def _loop(self) -> None:
        while True:
            first = self.q.get()
            if first is _STOP:
                return
            jobs, stop = self._gather(first)
            live = []
            for job in jobs:
                if job.future.set_running_or_notify_cancel():
                    live.append(job)
                else:
                    with self.lock:
                        self.pending_items -= len(job.items)
            if live:
                self._run(live)
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        t0 = time.perf_counter()
        items = [x for j in jobs for x in j.items]
        try:
            rows = self.fn(items)
            if len(rows) != len(items):
                raise RuntimeError(f"ItemBatcher {self.name}: {len(rows)} rows for {len(items)} items")
            results: list[Any] = []
            at = 0
            for j in jobs:
                results.append(rows[at: at + len(j.items)])
                at += len(j.items)
        except Exception:
            results = []
            for j in jobs:  # isolate the failing request
                try:
                    results.append(self.fn(j.items))
                except Exception as exc:
                    results.append(exc)
        dt = time.perf_counter() - t0
        with self.lock:
            self.pending_items -= len(items)
            self.sec_per_batch = 0.8 * self.sec_per_batch + 0.2 * dt
        if self.on_batch is not None:
            self.on_batch(len(jobs), len(items), dt)
        for j, r in zip(jobs, results):
            if isinstance(r, Exception):
                j.future.set_exception(r)
            else:
                j.future.set_result((r, t0 - j.t_submit, dt))

    def warm(self, items: Sequence) -> float:
        """Run ``items`` twice through the batcher (the first pays one-off costs); the second pass's seconds seed the estimate."""
        self.submit(items).result()
        t0 = time.perf_counter()
        self.submit(items).result()
        self.sec_per_batch = time.perf_counter() - t0
        return self.sec_per_batch

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.q.put(_STOP)
        self.worker.join()


# ----------------------------------------------------------------------------- /v1/retrieve

def build_retriever(config: ServeConfig, embedder: Any = None) -> Any:
    """The first stage named by ``answer_retriever`` (not indexed): ``hybrid`` (BM25 + dense over
    ``answer_embedder``, RRF), ``bm25`` or ``dense``. ``embedder`` (optional) is used instead of loading one."""
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    if config.answer_retriever == "bm25":
        return BM25Retriever()
    if embedder is None:
        from registry import load_embedder

        embedder = load_embedder(config.answer_embedder)
    if config.answer_retriever == "dense":
        return DenseRetriever(embedder)
    return HybridRetriever([BM25Retriever(), DenseRetriever(embedder)], names=("bm25", "dense"))


class LockedEmbedder:
    """An embedder shared by several threads (the answer worker, the retrieve and intent batchers): its
    ``encode_*`` calls run one at a time (a fast tokenizer is not safe to call from two threads at
    once, and two forward passes at once only split the cores); everything else is the wrapped
    embedder's (``name``, ``fingerprint``, ...)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def __getattr__(self, key: str) -> Any:
        return getattr(self._inner, key)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._inner.encode_queries(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self._inner.encode_documents(texts)


def lock_embedders(retriever: Any) -> None:
    """Wrap the embedder of ``retriever`` (or of each of a hybrid's components) in :class:`LockedEmbedder`, once."""
    for r in [retriever, *getattr(retriever, "retrievers", [])]:
        emb = getattr(r, "embedder", None)
        if emb is not None and not isinstance(emb, LockedEmbedder):
            r.embedder = LockedEmbedder(emb)


def find_embedder(retriever: Any, name: str) -> Any:
    """The embedder named ``name`` inside ``retriever`` (a dense retriever or a hybrid's dense half), or None."""
    for r in [retriever, *getattr(retriever, "retrievers", [])]:
        emb = getattr(r, "embedder", None)
        if emb is not None and getattr(emb, "name", None) == name:
            return emb
    return None


class RetrieveService:
    """``search(items)``: items are ``(query, k)``; rows are ``(corpus positions, scores)`` of ``retriever.search([query], k)``.

    Queries with the same ``k`` in one batch share one ``search`` call (one embedding pass for the dense half).
    """

    def __init__(self, retriever: Any, corpus: Sequence[Any], shared: bool) -> None:
        self.retriever, self.corpus, self.shared = retriever, list(corpus), shared
        self.name = str(getattr(retriever, "name", type(retriever).__name__))

    def search(self, items: list[tuple[str, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        rows: list[Any] = [None] * len(items)
        by_k: dict[int, list[int]] = {}
        for i, (_, k) in enumerate(items):
            by_k.setdefault(min(int(k), len(self.corpus)), []).append(i)
        for k, idx in by_k.items():
            res = self.retriever.search([items[i][0] for i in idx], k)
            for row, i in enumerate(idx):
                keep = res.indices[row] >= 0
                rows[i] = (np.asarray(res.indices[row][keep], dtype=np.int64), np.asarray(res.scores[row][keep], dtype=np.float64))
        return rows

    def payload(self, row: tuple[np.ndarray, np.ndarray], return_texts: bool) -> list[dict]:
        out = []
        for pos, score in zip(row[0].tolist(), row[1].tolist()):
            d = self.corpus[pos]
            out.append({"id": d.id, "score": float(score), **({"title": d.title, "text": d.text} if return_texts else {})})
        return out

    def close(self) -> None:
        pass


def build_retrieve_service(config: ServeConfig, answer_service: Any = None) -> RetrieveService:
    """``/v1/retrieve``'s service: the answer pipeline's own retriever and corpus when ``answer_service`` is given,
    else a first stage built by :func:`build_retriever` and indexed over ``answer_corpus`` (first ``answer_corpus_limit``)."""
    if answer_service is not None:
        pipe = answer_service.pipeline
        return RetrieveService(pipe.retriever, pipe.corpus, shared=True)
    from data import load_documents_jsonl
    from serve.answer import resolve_corpus

    docs = load_documents_jsonl(resolve_corpus(config.answer_corpus))
    if config.answer_corpus_limit:
        docs = docs[: config.answer_corpus_limit]
    retriever = build_retriever(config)
    retriever.index(docs)
    return RetrieveService(retriever, docs, shared=False)


# ----------------------------------------------------------------------------- /v1/score/faithfulness

class FaithfulnessService:
    """``score(items)``: items are :class:`FaithfulnessItem` (with ``check_claims`` attached); one ``predict_proba`` call per batch.

    A row is the item's best P(supported) over its passages, that passage's index, ``supported`` or
    ``unsupported`` at ``threshold``, and with ``check_claims`` the gate's result.
    """

    def __init__(self, scorer: Any, name: str, threshold: float | None = None) -> None:
        from generate.gate import FaithfulnessGate

        self.scorer, self.name = scorer, name
        self.threshold = float(threshold if threshold is not None else getattr(scorer, "threshold", 0.5))
        self.gate = FaithfulnessGate(scorer, threshold=self.threshold)

    def score(self, items: list[tuple[FaithfulnessItem, bool]]) -> list[dict]:
        ev, cl, qs, owner = [], [], [], []
        for n, (item, _) in enumerate(items):
            for p in item.evidence():
                ev.append(p)
                cl.append(item.answer)
                qs.append(item.question)
                owner.append(n)
        proba = np.asarray(self.scorer.predict_proba(ev, cl, qs), dtype=np.float64)
        owner_a = np.asarray(owner)
        rows = []
        for n, (item, check_claims) in enumerate(items):
            p = proba[owner_a == n]
            j = int(p.argmax())
            row: dict = {"score": float(p[j]), "label": "supported" if p[j] >= self.threshold else "unsupported",
                         "best_passage": j, "passage_scores": [float(x) for x in p]}
            if check_claims:
                g = self.gate.check(item.question, item.answer, item.evidence())
                row["gate"] = {"verdict": g.verdict, "passed": g.passed,
                               "claims": [{"claim": c.claim, "verdict": c.verdict, "p_supported": c.p_supported,
                                           "passage": c.best_passage, "evidence_span": c.evidence_span} for c in g.claims]}
            rows.append(row)
        return rows

    def close(self) -> None:
        pass


def build_faithfulness_service(config: ServeConfig) -> FaithfulnessService:
    """The registry's ``faithfulness_model`` via :func:`registry.load_faithfulness` (what the benchmarks score with)."""
    from registry import load_faithfulness

    return FaithfulnessService(load_faithfulness(config.faithfulness_model), config.faithfulness_model, config.faithfulness_threshold)


# ----------------------------------------------------------------------------- /v1/classify/intent

class IntentService:
    """``classify(texts)``: one embedding pass per batch, then :meth:`cascade.intent.IntentModel.predict_from_embeddings`."""

    def __init__(self, model: Any, name: str) -> None:
        self.model, self.name = model, name

    def classify(self, texts: list[str]) -> list[dict]:
        labels, top, conf = self.model.classify_embeddings(self.model.embed(texts))
        return [{"label": str(lab), "intent": str(t), "confidence": float(c), "out_of_scope": bool(lab == self.model.oos_label)}
                for lab, t, c in zip(labels, top, conf)]

    def close(self) -> None:
        pass


def resolve_intent_model(spec: str) -> Path:
    """``intent_model`` -> a folder holding ``model.json``: as given, else under the project root
    (``registry.project_root()``: ``$RAGFIX_HOME`` or this checkout). FileNotFoundError naming both."""
    from registry import project_root

    tried = []
    for cand in (Path(spec).expanduser(), project_root() / spec):
        tried.append(str(cand))
        if (cand / "model.json").is_file():
            return cand
    raise FileNotFoundError(f"intent_model={spec!r}: no intent model (model.json) at {', '.join(tried)}; "
                            "give a folder written by `ragfix train intent`, e.g. models/intent-clinc150")


def build_intent_service(config: ServeConfig, embedder: Any = None) -> IntentService:
    """The intent model at ``intent_model`` via :func:`registry.load_intent_model`; ``embedder`` (e.g. the
    retriever's, when it is the one the model was trained on) is attached instead of loading another copy."""
    from registry import load_intent_model

    folder = resolve_intent_model(config.intent_model)
    return IntentService(load_intent_model(folder, shared_embedder=embedder), folder.name)
