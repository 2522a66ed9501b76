"""Cross-request dynamic micro-batching: concurrent requests share forward passes.

Failure mode VIII (Reranker on the Request Path). Under concurrency each request scoring its own
K pairs alone runs small, under-filled batches back to back, and requests queue behind each
other. A single worker thread owning the model gathers the pairs of every request that arrived
within ``max_wait_ms`` (or until ``max_tokens`` padded tokens are pending), scores them as one
length-sorted token-budget plan, and routes each request's scores back to its ``Future``. With
one request in flight it adds at most ``max_wait_ms``; with many it fills batches (the same
design as text-embeddings-inference's token-budget batching). Measured by ``ragfix bench
rerank`` (variant ``microbatch``, one request at a time) and ``ragfix bench pipeline
--concurrency 1,4,8`` (throughput, per-request vs cross-request).

Shutdown is clean: :meth:`MicroBatcher.close` stops intake, finishes every queued request and
joins the worker; ``submit`` after ``close`` raises. Left out: priorities and per-request
deadlines.

Example:
    >>> with MicroBatcher(engine, max_wait_ms=2) as mb:                    # doctest: +SKIP
    ...     scores = mb.submit(pairs).result()
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from rerank.cross_encoder import RankedResults
from rerank.truncation import EncodedPairs
from retrieval.types import Document

__all__ = ["MicroBatcher", "gather"]

_STOP = object()


@dataclass
class _Request:
    enc: EncodedPairs
    future: Future


def gather(q: queue.Queue, first: Any, size: Callable[[Any], int], limit: int, max_wait_s: float,
           stop: object) -> tuple[list, bool]:
    """``first`` plus the requests that reach ``q`` within ``max_wait_s`` while their summed ``size`` stays below
    ``limit`` (one batch of a cross-request batcher); also whether the ``stop`` sentinel was taken off the queue."""
    batch, n, stopped = [first], size(first), False
    t_end = time.perf_counter() + max_wait_s
    while n < limit:
        left = t_end - time.perf_counter()
        try:
            item = q.get(timeout=left) if left > 0 else q.get_nowait()
        except queue.Empty:
            break
        if item is stop:
            stopped = True
            break
        batch.append(item)
        n += size(item)
    return batch, stopped


def _merge(encs: Sequence[EncodedPairs]) -> EncodedPairs:
    ids: list[list[int]] = []
    tts: list[list[int]] | None = []
    for e in encs:
        ids.extend(e.input_ids)
        if e.token_type_ids is None or tts is None:
            tts = None
        else:
            tts.extend(e.token_type_ids)
    return EncodedPairs(ids, tts, np.concatenate([e.lengths for e in encs]), np.concatenate([e.full_lengths for e in encs]),
                        sum(e.truncated for e in encs), sum(e.query_truncated for e in encs))


class MicroBatcher:
    """Queue requests from many threads; one worker scores them together.

    Args:
        engine: a :class:`rerank.RerankEngine` (its ``encode`` runs in the caller's thread, its
            ``score_encoded`` in the worker).
        max_wait_ms: how long the worker waits for more requests after the first one arrives.
        max_tokens: padded tokens gathered before the worker stops waiting (the engine's own
            ``max_tokens_per_batch`` still bounds each forward pass).
    """

    def __init__(self, engine: Any, max_wait_ms: float = 2.0, max_tokens: int = 65536) -> None:
        if max_wait_ms < 0:
            raise ValueError(f"MicroBatcher: max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_tokens < 1:
            raise ValueError(f"MicroBatcher: max_tokens must be >= 1, got {max_tokens}")
        self.engine, self.max_wait_s, self.max_tokens = engine, max_wait_ms / 1000.0, int(max_tokens)
        self._q: queue.Queue = queue.Queue()
        self._closed = False
        self._intake = threading.Lock()
        self.requests_per_pass_: list[int] = []
        self._worker = threading.Thread(target=self._loop, name="rerank-microbatcher", daemon=True)
        self._worker.start()

    def submit(self, pairs: Sequence[tuple[str, str]]) -> Future:
        """Queue ``pairs``; the future resolves to their logits in input order (or to the error)."""
        enc = self.engine.encode(pairs)  # tokenize in the caller's thread: the worker only runs the model
        fut: Future = Future()
        with self._intake:
            if self._closed:
                raise RuntimeError("MicroBatcher is closed; create a new one")
            self._q.put(_Request(enc, fut))
        return fut

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        return self.submit(pairs).result()

    def rank(self, query: str, docs: Sequence[Document], top_k: int | None = None) -> RankedResults:
        scores = self.score_pairs([(query, d.full_text()) for d in docs])
        order = np.argsort(-scores, kind="stable")[: top_k if top_k is not None else len(docs)]
        return RankedResults([docs[i] for i in order], scores[order], order)

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        return gather(self._q, first, lambda r: int(r.enc.lengths.sum()), self.max_tokens, self.max_wait_s, _STOP)

    def _loop(self) -> None:
        stop = False
        while True:
            if stop:
                # Drain whatever was queued before close(): no request is left without an answer.
                try:
                    first = self._q.get_nowait()
                except queue.Empty:
                    return
            else:
                first = self._q.get()
            if first is _STOP:
                stop = True
                continue
            batch, got_stop = self._gather(first)
            stop = stop or got_stop
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                scores = self.engine.score_encoded(_merge([r.enc for r in live]))
            except BaseException as exc:  # route the failure to every waiting request, keep serving
                for r in live:
                    r.future.set_exception(exc)
                continue
            self.requests_per_pass_.append(len(live))
            start = 0
            for r in live:
                n = len(r.enc.input_ids)
                r.future.set_result(scores[start:start + n])
                start += n

    def close(self, timeout: float | None = None) -> None:
        """Stop intake, finish queued requests, join the worker."""
        with self._intake:
            if self._closed:
                return
            self._closed = True
            self._q.put(_STOP)
        self._worker.join(timeout)

    def __enter__(self) -> "MicroBatcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
