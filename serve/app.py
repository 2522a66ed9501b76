"""The FastAPI application: ``/v1/rerank``, ``/v1/answer``, ``/v1/retrieve``, ``/v1/score/faithfulness`` and
``/v1/classify/intent`` behind admission control, health, readiness and metrics.

Failure mode VIII (Reranker on the Request Path), at the server: without a bound, a reranker
behind an endpoint accepts every request and lets latency grow with the queue until clients time
out. Here every ``/v1`` request passes admission first:

* more than ``max_queue`` requests admitted at once -> ``429`` with ``Retry-After`` (the estimated
  time for the queue to drain);
* the estimated wait already exceeds the request's deadline (``X-Request-Timeout-Ms`` header, or
  ``deadline_ms``) -> ``503`` with ``Retry-After``; a request still unscored at its deadline is
  cancelled (the micro-batcher skips it) and gets the same ``503``;
* a body over ``max_body_bytes``, more than ``max_documents`` documents or a text over
  ``max_text_chars`` -> ``413``; a malformed JSON body -> ``400``; a body that fails validation ->
  ``422`` naming the field; a wrong or missing bearer token (when one is set) -> ``401``;
* draining after SIGTERM (:mod:`serve.server`) -> ``503`` with ``Retry-After`` and
  ``Connection: close``; requests admitted before the signal finish.

No response carries a stack trace: an unexpected error is logged server-side and answered
``500 {"error": {"type": "internal_error", ...}}`` with a request id to find the log line.

``/v1/answer`` (with ``answer: true``) runs the product pipeline (:mod:`serve.answer`) behind the
same admission: a slot of ``max_queue``, a wait estimate from its own seconds-per-answer, the
deadline (an answer not started by then is cancelled; one still generating at the deadline is
stopped between tokens), the size limits and the drain. ``stream: true`` answers with server-sent
events (``start``, one ``token`` per text delta, then ``done`` carrying the whole result with
per-stage timings, or ``error``); ``stream: false`` with one JSON body.

``/v1/retrieve`` (``retrieve: true``), ``/v1/score/faithfulness`` (``faithfulness: true``) and
``/v1/classify/intent`` (``intent: true``) serve the first stage and the two specialists
(:mod:`serve.specialists`: the retriever the answer pipeline uses, ``registry.load_faithfulness``,
``registry.load_intent_model``) behind the same token, size limits (plus ``max_items``), admission
slot, deadline and drain; each endpoint's requests are batched across clients by one
:class:`serve.specialists.ItemBatcher`, with per-endpoint stage, batch-size, queue-depth and
rejection metrics. An endpoint left off answers ``404 not_enabled``. ``/health`` and ``/ready``
are the issue's names for ``/healthz`` and ``/readyz`` (both kept).

Leaves out: priorities between requests, TLS (terminate it in front).

Request and response shapes follow Cohere's ``/v1/rerank`` (``documents``, ``top_n``,
``return_documents`` -> ``{"results": [{"index", "relevance_score", "document"}]}``) and Hugging
Face text-embeddings-inference's ``/rerank`` (``texts``, ``raw_scores``, ``return_text`` -> a list
of ``{"index", "score", "text"}``), so either client works. Scores are the cross-encoder's
sigmoid (``raw_scores: true`` returns logits).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Callable, Protocol, Sequence

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.answer import AnswerRequest
from serve.config import ServeConfig
from serve.specialists import FaithfulnessRequest, IntentRequest, RetrieveRequest

__all__ = ["Scorer", "MicroBatchScorer", "PerRequestScorer", "ServeState", "create_app", "RerankRequest"]

log = logging.getLogger("ragfix.serve")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Scorer(Protocol):
    """What the app scores with: a future of logits for ``pairs`` (cancel it to skip unstarted work)."""

    name: str

    def submit(self, pairs: Sequence[tuple[str, str]]) -> Future: ...

    def take_batch_stats(self) -> tuple[list[int], list[int]]: ...

    def close(self) -> None: ...


class MicroBatchScorer:
    """The fixed server: one :class:`rerank.microbatch.MicroBatcher` worker batches across requests."""

    def __init__(self, engine: Any, max_wait_ms: float, max_batch_tokens: int) -> None:
        from rerank.microbatch import MicroBatcher

        self.engine = engine
        self.name = f"{engine.name}+microbatch"
        self.batcher = MicroBatcher(engine, max_wait_ms=max_wait_ms, max_tokens=max_batch_tokens)

    def submit(self, pairs: Sequence[tuple[str, str]]) -> Future:
        return self.batcher.submit(pairs)

    def take_batch_stats(self) -> tuple[list[int], list[int]]:
        """(requests per forward pass, pairs per forward pass) since the last call; the lists are emptied."""
        return _take(self.batcher.requests_per_pass_), _take(self.engine.batch_sizes_)

    def close(self) -> None:
        self.batcher.close()


class PerRequestScorer:
    """The naive server: each request scores its own pairs on a thread of an unbounded-queue pool."""

    def __init__(self, engine: Any, threads: int = 8) -> None:
        self.engine = engine
        self.name = f"{engine.name}+per-request"
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="rerank-per-request")

    def submit(self, pairs: Sequence[tuple[str, str]]) -> Future:
        return self.pool.submit(self.engine.score_pairs, pairs)

    def take_batch_stats(self) -> tuple[list[int], list[int]]:
        sizes = _take(self.engine.batch_sizes_)
        return [], sizes

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _take(values: list) -> list:
    n = len(values)
    out = values[:n]
    del values[:n]  # list slicing and deletion are atomic under the GIL; appends after n survive
    return out


class DocumentObject(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str


class RerankRequest(BaseModel):
    """A Cohere-shaped (``documents``) or TEI-shaped (``texts``) rerank request."""

    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1)
    documents: list[str | DocumentObject] | None = None
    texts: list[str] | None = None
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    raw_scores: bool = False
    return_text: bool = False
    model: str | None = None

    @model_validator(mode="after")
    def _one_list(self) -> "RerankRequest":
        if (self.documents is None) == (self.texts is None):
            raise ValueError("give exactly one of 'documents' (Cohere shape) or 'texts' (TEI shape)")
        if not (self.documents if self.documents is not None else self.texts):
            raise ValueError("the document list is empty; send at least one document")
        return self

    def doc_texts(self) -> list[str]:
        if self.texts is not None:
            return list(self.texts)
        return [d if isinstance(d, str) else d.text for d in self.documents or []]


class ServeState:
    """Admission bookkeeping shared by the app and the SIGTERM drain (:mod:`serve.server`).

    The wait estimate is ``(depth ahead + 1) x sec_per_request``, where ``sec_per_request`` is an
    EWMA of each answered request's time in the scorer divided by its position at admission
    (``latency / (ahead + 1)``): the time one queue slot takes to clear at the current load,
    smooth under micro-batching (completions arrive in bursts, a per-slot time does not).
    """

    def __init__(self) -> None:
        self.ready = False
        self.draining = False
        self.load_error: str | None = None
        self.inflight = 0
        self.lock = threading.Lock()
        self.sec_per_request = 0.05  # replaced by the warm-up request's time at load
        self.idle = threading.Event()
        self.idle.set()

    def admit(self, limit: int) -> int | None:
        """Take a slot; returns the depth ahead, or None when ``limit`` (> 0) slots are taken."""
        with self.lock:
            if limit and self.inflight >= limit:
                return None
            ahead = self.inflight
            self.inflight += 1
            self.idle.clear()
            return ahead

    def release(self, latency_s: float | None = None, ahead: int = 0) -> None:
        """Free a slot; ``latency_s`` (answered requests only) updates the per-slot time."""
        with self.lock:
            self.inflight -= 1
            if latency_s is not None:
                self.sec_per_request = 0.8 * self.sec_per_request + 0.2 * latency_s / (ahead + 1)
            if self.inflight == 0:
                self.idle.set()

    def wait_estimate_s(self, ahead: int) -> float:
        return (ahead + 1) * self.sec_per_request


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ragfix_serve_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("ragfix_serve_request_seconds", "Request latency by endpoint (admitted requests)", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("ragfix_serve_stage_seconds", "Per-stage latency: tokenize+queue+score (score), whole handler (total)",
                               ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("ragfix_serve_rejected", "Requests refused before scoring, by reason", ["reason"], registry=r)
        self.queue_depth = Gauge("ragfix_serve_queue_depth", "Requests admitted and not yet answered", registry=r)
        self.batch_requests = Histogram("ragfix_serve_batch_requests", "Requests merged into one micro-batch pass",
                                        buckets=_BATCH_BUCKETS, registry=r)
        self.batch_pairs = Histogram("ragfix_serve_batch_pairs", "Pairs per forward pass", buckets=_BATCH_BUCKETS, registry=r)
        self.pairs = Counter("ragfix_serve_pairs", "Query-document pairs scored", registry=r)
        self.answer_stage = Histogram("ragfix_serve_answer_stage_seconds",
                                      "/v1/answer per-stage wall time: queue, retrieve, rerank, generate, ttft, total",
                                      ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.answer_tokens = Counter("ragfix_serve_answer_tokens", "/v1/answer tokens by kind (prompt, completion)", ["kind"], registry=r)
        self.endpoint_stage = Histogram("ragfix_serve_endpoint_stage_seconds",
                                        "/v1/retrieve, /v1/score/faithfulness, /v1/classify/intent per-stage wall time: "
                                        "queue (admitted -> its batch starts), compute (the batch's library call), total",
                                        ["endpoint", "stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.endpoint_rejected = Counter("ragfix_serve_endpoint_rejected", "Requests refused before computing, by endpoint and reason",
                                         ["endpoint", "reason"], registry=r)
        self.endpoint_batch_requests = Histogram("ragfix_serve_endpoint_batch_requests", "Requests merged into one specialist batch",
                                                 ["endpoint"], buckets=_BATCH_BUCKETS, registry=r)
        self.endpoint_batch_items = Histogram("ragfix_serve_endpoint_batch_items",
                                              "Items per specialist batch (queries, faithfulness items, intent texts)",
                                              ["endpoint"], buckets=_BATCH_BUCKETS, registry=r)
        self.endpoint_queue_depth = Gauge("ragfix_serve_endpoint_queue_depth", "Requests admitted and not yet answered, by endpoint",
                                          ["endpoint"], registry=r)


class _LLMCacheCollector:
    """``/metrics`` families read at scrape time from the answer service: the warm-prefix warmer's
    counts and the LLM server's own prompt-cache counts (where its responses report them)."""

    def __init__(self, holder: dict) -> None:
        self.holder = holder

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        service = self.holder.get("answer")
        if service is None:
            return
        warmer = getattr(service, "warmer", None)
        if warmer is not None:
            with warmer.lock:
                st = warmer.stats
                sent, failed, secs = dict(st.sent), dict(st.failed), dict(st.seconds)
                w_cached, w_prompt, w_reported, rounds = st.cached_tokens, st.prompt_tokens, st.reported, st.rounds
            req = CounterMetricFamily("ragfix_serve_warm_prefix_requests", "Warm requests (max_tokens=1) per declared prefix",
                                      labels=["prefix", "outcome"])
            for p in warmer.prefixes:
                req.add_metric([p.name, "ok"], sent.get(p.name, 0))
                req.add_metric([p.name, "failed"], failed.get(p.name, 0))
            yield req
            sec = CounterMetricFamily("ragfix_serve_warm_prefix_seconds", "Seconds spent in warm requests per prefix", labels=["prefix"])
            for p in warmer.prefixes:
                sec.add_metric([p.name], secs.get(p.name, 0.0))
            yield sec
            yield CounterMetricFamily("ragfix_serve_warm_prefix_rounds", "Warm rounds over the declared set", value=rounds)
        else:
            w_cached = w_prompt = w_reported = 0
        totals = dict(getattr(service.pipeline.llm, "cache_totals", {}) or {})
        if warmer is None and not totals and getattr(service, "llm_server", None) is None:
            return
        cached = CounterMetricFamily("ragfix_serve_llm_cached_tokens", "Prompt tokens the LLM server reported as served from its cache",
                                     labels=["source"])
        prompt = CounterMetricFamily("ragfix_serve_llm_reported_prompt_tokens",
                                     "Prompt tokens of the responses that carried a cached-token count", labels=["source"])
        reported = CounterMetricFamily("ragfix_serve_llm_cache_reports", "Responses that carried a cached-token count", labels=["source"])
        for source, c, pr, n in (("warm", w_cached, w_prompt, w_reported),
                                 ("answer", totals.get("cached_tokens", 0), totals.get("prompt_tokens", 0), totals.get("reported", 0))):
            cached.add_metric([source], c)
            prompt.add_metric([source], pr)
            reported.add_metric([source], n)
        yield cached
        yield prompt
        yield reported
        srv = getattr(service, "llm_server", None)
        if srv is not None:  # a llama.cpp server this process launched: its own log's counts
            log_counts = srv.counters.snapshot()
            lc = CounterMetricFamily("ragfix_serve_llm_server_log_tokens",
                                     "llama.cpp server log: prompt tokens reused from its cache (cached) and evaluated after a prefix hit",
                                     labels=["kind"])
            lc.add_metric(["cached"], log_counts["cached_tokens"])
            lc.add_metric(["evaluated_after_hit"], log_counts["evaluated_tokens"])
            yield lc
            yield CounterMetricFamily("ragfix_serve_llm_server_state_restores", "llama.cpp server log: saved prompt states restored",
                                      value=log_counts["state_hits"])
            sent_prompt = totals.get("all_prompt_tokens", 0) + (warmer.stats.all_prompt_tokens if warmer is not None else 0)
            if sent_prompt:
                yield GaugeMetricFamily("ragfix_serve_llm_server_prefix_hit_ratio",
                                        "Prompt tokens the llama.cpp server reused from its cache / prompt tokens sent (warm + answers)",
                                        value=log_counts["cached_tokens"] / sent_prompt)
        if totals.get("prompt_tokens"):
            yield GaugeMetricFamily("ragfix_serve_llm_prefix_cache_hit_ratio",
                                    "Answers' cached prompt tokens / prompt tokens, as the LLM server reported them",
                                    value=totals["cached_tokens"] / totals["prompt_tokens"])


def _error(status: int, kind: str, message: str, retry_after: int | None = None, close: bool = False, **extra: Any) -> JSONResponse:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(int(retry_after))
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status, headers=headers)


class _BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413 before the app reads them.

    A declared ``Content-Length`` over the limit is refused without reading; a chunked body is read
    up to the limit (never more) and replayed to the app.
    """

    def __init__(self, app: Any, limit: int, on_reject: Callable[[], None]) -> None:
        self.app, self.limit, self.on_reject = app, limit, on_reject

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = False
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                return await _error(400, "invalid_request", "Content-Length is not an integer")(scope, receive, send)
        messages: list[dict] = []
        if not too_big and declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            size = 0
            while True:
                msg = await receive()
                messages.append(msg)
                if msg["type"] != "http.request":
                    break
                size += len(msg.get("body", b""))
                if size > self.limit:
                    too_big = True
                    break
                if not msg.get("more_body"):
                    break
        if too_big:
            self.on_reject()
            return await _error(413, "payload_too_large", f"request body over {self.limit} bytes (max_body_bytes); send fewer or shorter documents",
                                close=True)(scope, receive, send)
        if not messages:
            return await self.app(scope, receive, send)
        replay = iter(messages)

        async def replay_receive() -> dict:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        return await self.app(scope, replay_receive, send)


def _sse(event: str, data: Any) -> str:
    """One server-sent event: ``event: <name>`` and one ``data:`` line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(config: ServeConfig, load_scorer: Callable[[ServeConfig], Scorer], state: ServeState | None = None,
               load_answer: Callable[[ServeConfig, Scorer], Any] | None = None) -> FastAPI:
    """Build the app; ``load_scorer(config)`` runs on a background thread at startup (``/readyz`` waits for it).

    With ``config.answer``, ``load_answer(config, scorer)`` (default
    :func:`serve.answer.build_answer_service`) then builds and warms the pipeline behind ``/v1/answer``.
    ``state`` is shared with :func:`serve.server.run` so SIGTERM can start the drain.
    """
    state = state or ServeState()
    metrics = _Metrics()
    token = config.bearer_token()
    holder: dict[str, Any] = {}
    specialist: dict[str, tuple[Any, Any]] = {}  # endpoint -> (service, ItemBatcher), filled at load (serve.specialists)

    def load() -> None:
        try:
            scorer = load_scorer(config)
            scorer.submit([("warm-up query", "warm-up document")]).result()  # first call: allocator, thread pools
            t = time.perf_counter()
            scorer.submit([("warm-up query", "warm-up document " * 40)] * 8).result()
            state.sec_per_request = time.perf_counter() - t  # first wait estimate; answered requests refine it
            scorer.take_batch_stats()
            if config.answer:
                if load_answer is None:
                    from serve.answer import build_answer_service as _build
                else:
                    _build = load_answer
                holder["answer"] = _build(config, scorer)
                log.info("ragfix serve: /v1/answer ready (%s)", holder["answer"].name)
            _load_specialists(scorer)
            holder["scorer"] = scorer
            state.ready = True
            log.info("ragfix serve: %s ready", scorer.name)
        except Exception as exc:  # the server stays up and says why on /readyz
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("ragfix serve: loading the model failed")

    def _batcher(endpoint: str, fn: Callable[[list], list]) -> Any:
        from serve.specialists import ItemBatcher

        def on_batch(n_requests: int, n_items: int, seconds: float) -> None:
            metrics.endpoint_batch_requests.labels(endpoint).observe(n_requests)
            metrics.endpoint_batch_items.labels(endpoint).observe(n_items)

        return ItemBatcher(fn, endpoint.rsplit("/", 1)[-1], max_wait_ms=config.max_wait_ms, max_items=config.max_batch_items,
                           on_batch=on_batch)

    def _load_specialists(scorer: Any) -> None:
        """``retrieve`` / ``faithfulness`` / ``intent``: build each service switched on, put a batcher in front, warm it."""
        from serve import specialists as sp

        if (config.retrieve or config.intent) and "answer" in holder:
            sp.lock_embedders(holder["answer"].pipeline.retriever)  # now shared across threads
        if config.retrieve:
            service = sp.build_retrieve_service(config, holder.get("answer"))
            sp.lock_embedders(service.retriever)
            batcher = _batcher("/v1/retrieve", service.search)
            batcher.warm([("warm-up query about a protein", 10)])
            specialist["/v1/retrieve"] = (service, batcher)
            log.info("ragfix serve: /v1/retrieve ready (%s over %d documents%s)", service.name, len(service.corpus),
                     ", shared with /v1/answer" if service.shared else "")
        if config.faithfulness:
            service = sp.build_faithfulness_service(config)
            batcher = _batcher("/v1/score/faithfulness", service.score)
            item = sp.FaithfulnessItem(question="Who wrote it?", passage="The book was written by Ann Lee in 1990.", answer="Ann Lee.")
            batcher.warm([(item, False)])
            specialist["/v1/score/faithfulness"] = (service, batcher)
            log.info("ragfix serve: /v1/score/faithfulness ready (%s, threshold %.4f)", service.name, service.threshold)
        if config.intent:
            shared = None
            if "/v1/retrieve" in specialist or "answer" in holder:
                retriever = specialist["/v1/retrieve"][0].retriever if "/v1/retrieve" in specialist else holder["answer"].pipeline.retriever
                shared = sp.find_embedder(retriever, config.answer_embedder)
            service = sp.build_intent_service(config, shared)
            batcher = _batcher("/v1/classify/intent", service.classify)
            batcher.warm(["book a table for two at eight", "what is my account balance"])
            specialist["/v1/classify/intent"] = (service, batcher)
            log.info("ragfix serve: /v1/classify/intent ready (%s, %d intents%s)", service.name, len(service.model.classifier.classes_),
                     ", embedder shared with the retriever" if shared is not None and service.model.embedder is shared else "")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load, name="ragfix-serve-load", daemon=True).start()
        yield
        for service, batcher in list(specialist.values()):
            await asyncio.to_thread(batcher.close)
            service.close()
        service = holder.get("answer")
        if service is not None:
            await asyncio.to_thread(service.close)
        scorer = holder.get("scorer")
        if scorer is not None:
            await asyncio.to_thread(scorer.close)

    metrics.registry.register(_LLMCacheCollector(holder))
    app = FastAPI(title="ragfix serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve_state = state
    app.state.metrics = metrics

    def require_token(request: Request) -> None:
        if token is None:
            return
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            metrics.rejected.labels("unauthorized").inc()
            raise StarletteHTTPException(401, "missing or wrong bearer token; send 'Authorization: Bearer <token>'",
                                         headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        resp = _error(exc.status_code, kind, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        metrics.requests.labels(request.url.path if request.url.path.startswith("/v1") else "other", str(exc.status_code)).inc()
        return resp

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            status, kind, msg = 400, "invalid_json", "the body is not valid JSON"
        else:
            status, kind, msg = 422, "invalid_request", "the body does not match the schema; see 'details'"
        details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in errors[:20]]
        metrics.requests.labels(request.url.path, str(status)).inc()
        return _error(status, kind, msg, details=details)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        rid = uuid.uuid4().hex[:12]
        log.error("ragfix serve: request %s failed", rid, exc_info=exc)
        metrics.requests.labels(request.url.path, "500").inc()
        return _error(500, "internal_error", "internal error; the server log has the details", request_id=rid)

    @app.get("/health")
    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state.draining:
            return _error(503, "draining", "the server is shutting down", retry_after=config.retry_after_s)
        if state.load_error:
            return _error(503, "load_failed", state.load_error)
        if not state.ready:
            return _error(503, "loading", "the model is loading", retry_after=config.retry_after_s)
        body = {"status": "ready", "model": holder["scorer"].name}
        if "answer" in holder:
            body["answer_llm"] = holder["answer"].name
        if specialist:
            body["endpoints"] = {ep: service.name for ep, (service, _) in specialist.items()}
        return JSONResponse(body)

    @app.get("/metrics", dependencies=[Depends(require_token)])
    async def metrics_text() -> PlainTextResponse:
        _sync_batches()
        return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST)

    def _sync_batches() -> None:
        scorer = holder.get("scorer")
        if scorer is None:
            return
        per_pass, pairs = scorer.take_batch_stats()
        for n in per_pass:
            metrics.batch_requests.observe(n)
        for n in pairs:
            metrics.batch_pairs.observe(n)

    def _retry_after(ahead: int) -> int:
        return max(config.retry_after_s, math.ceil(state.wait_estimate_s(ahead)))

    @app.post("/v1/rerank", dependencies=[Depends(require_token)])
    async def rerank(body: RerankRequest, request: Request) -> Any:
        endpoint = "/v1/rerank"
        t0 = time.perf_counter()

        def refuse(status: int, reason: str, message: str, retry: int | None = None, close: bool = False) -> JSONResponse:
            metrics.rejected.labels(reason).inc()
            metrics.requests.labels(endpoint, str(status)).inc()
            return _error(status, reason, message, retry_after=retry, close=close)

        if state.draining:
            return refuse(503, "draining", "the server is shutting down; retry on another instance", config.retry_after_s, close=True)
        if not state.ready:
            return refuse(503, "loading", state.load_error or "the model is loading", config.retry_after_s)
        texts = body.doc_texts()
        if len(texts) > config.max_documents:
            return refuse(413, "too_many_documents", f"{len(texts)} documents; the limit is {config.max_documents} (max_documents)")
        longest = max([len(body.query)] + [len(t) for t in texts])
        if longest > config.max_text_chars:
            return refuse(413, "text_too_long", f"a text of {longest} characters; the limit is {config.max_text_chars} (max_text_chars)")
        deadline_s = config.deadline_ms / 1000.0 if config.deadline_ms else None
        header = request.headers.get("x-request-timeout-ms")
        if header is not None:
            try:
                asked = float(header)
                if not asked > 0 or not math.isfinite(asked):
                    raise ValueError
            except ValueError:
                return refuse(400, "invalid_request", f"X-Request-Timeout-Ms={header!r}: must be a positive number of milliseconds")
            deadline_s = asked / 1000.0 if deadline_s is None else min(deadline_s, asked / 1000.0)
        ahead = state.admit(config.max_queue)
        if ahead is None:
            return refuse(429, "queue_full", f"{config.max_queue} requests already queued (max_queue); retry after the Retry-After seconds",
                          _retry_after(config.max_queue))
        latency: float | None = None
        metrics.queue_depth.inc()
        try:
            if deadline_s is not None and state.wait_estimate_s(ahead) > deadline_s:
                return refuse(503, "deadline", f"estimated wait {state.wait_estimate_s(ahead) * 1000:.0f} ms exceeds the "
                              f"{deadline_s * 1000:.0f} ms deadline", _retry_after(ahead))
            pairs = [(body.query, t) for t in texts]
            loop = asyncio.get_running_loop()
            cf = await loop.run_in_executor(None, holder["scorer"].submit, pairs)  # tokenizes off the event loop
            left = None if deadline_s is None else max(0.0, deadline_s - (time.perf_counter() - t0))
            try:
                logits = await asyncio.wait_for(asyncio.wrap_future(cf), left)
            except (asyncio.TimeoutError, TimeoutError):
                cf.cancel()  # not started yet: the micro-batcher skips it
                return refuse(503, "deadline", f"not scored within the {deadline_s * 1000:.0f} ms deadline", _retry_after(state.inflight))
            latency = time.perf_counter() - t0
        finally:
            state.release(latency, ahead)
            metrics.queue_depth.dec()
        t_score = time.perf_counter() - t0
        logits = np.asarray(logits, dtype=np.float64)
        scores = logits if body.raw_scores else 1.0 / (1.0 + np.exp(-logits))
        order = np.argsort(-scores, kind="stable")
        if body.top_n is not None:
            order = order[: body.top_n]
        metrics.pairs.inc(len(pairs))
        metrics.stage.labels("score").observe(t_score)
        _sync_batches()
        total = time.perf_counter() - t0
        metrics.stage.labels("total").observe(total)
        metrics.latency.labels(endpoint).observe(total)
        metrics.requests.labels(endpoint, "200").inc()
        if body.texts is not None:  # TEI shape: a bare list
            return [{"index": int(i), "score": float(scores[i]), **({"text": texts[i]} if body.return_text else {})} for i in order]
        results = [{"index": int(i), "relevance_score": float(scores[i]),
                    **({"document": {"text": texts[i]}} if body.return_documents else {})} for i in order]
        return {"id": uuid.uuid4().hex, "results": results,
                "meta": {"model": holder["scorer"].name, "timings_ms": {"score": t_score * 1000, "total": total * 1000}}}

    def _refuse(endpoint: str, status: int, reason: str, message: str, retry: int | None = None, close: bool = False) -> JSONResponse:
        metrics.rejected.labels(reason).inc()
        metrics.requests.labels(endpoint, str(status)).inc()
        return _error(status, reason, message, retry_after=retry, close=close)

    def _deadline_s(request: Request) -> float | None:
        """The request's deadline in seconds (``deadline_ms``, tightened by ``X-Request-Timeout-Ms``); ValueError on a bad header."""
        deadline_s = config.deadline_ms / 1000.0 if config.deadline_ms else None
        header = request.headers.get("x-request-timeout-ms")
        if header is None:
            return deadline_s
        try:
            asked = float(header)
        except ValueError:
            asked = float("nan")
        if not asked > 0 or not math.isfinite(asked):
            raise ValueError(f"X-Request-Timeout-Ms={header!r}: must be a positive number of milliseconds")
        return asked / 1000.0 if deadline_s is None else min(deadline_s, asked / 1000.0)

    @app.post("/v1/answer", dependencies=[Depends(require_token)])
    async def answer(body: AnswerRequest, request: Request) -> Any:
        from serve.answer import AnswerCancelled, result_payload

        endpoint = "/v1/answer"
        t0 = time.perf_counter()
        if state.draining:
            return _refuse(endpoint, 503, "draining", "the server is shutting down; retry on another instance", config.retry_after_s, close=True)
        if not state.ready:
            return _refuse(endpoint, 503, "loading", state.load_error or "the models are loading", config.retry_after_s)
        service = holder.get("answer")
        if service is None:
            metrics.requests.labels(endpoint, "404").inc()
            return _error(404, "not_enabled", "/v1/answer is off on this server; start it with answer: true (configs/serve.yaml) or --answer")
        longest = max(len(t) for t in body.texts())
        if longest > config.max_text_chars:
            return _refuse(endpoint, 413, "text_too_long", f"a text of {longest} characters; the limit is {config.max_text_chars} (max_text_chars)")
        if body.max_tokens is not None and body.max_tokens > config.answer_max_tokens:
            metrics.requests.labels(endpoint, "422").inc()
            return _error(422, "invalid_request", f"max_tokens={body.max_tokens} is over this server's answer_max_tokens={config.answer_max_tokens}; ask for fewer",
                          details=[{"loc": ["body", "max_tokens"], "msg": f"must be <= {config.answer_max_tokens}"}])
        try:
            deadline_s = _deadline_s(request)
        except ValueError as exc:
            return _refuse(endpoint, 400, "invalid_request", str(exc))
        ahead = state.admit(config.max_queue)
        if ahead is None:
            return _refuse(endpoint, 429, "queue_full", f"{config.max_queue} requests already queued (max_queue); retry after the Retry-After seconds",
                           max(config.retry_after_s, math.ceil(service.wait_estimate_s(service.inflight))))
        answers_ahead = service.admit()
        metrics.queue_depth.inc()
        slot = {"held": True}

        def free(run_s: float | None = None) -> None:
            if slot["held"]:
                slot["held"] = False
                service.release(run_s)
                state.release(None, ahead)
                metrics.queue_depth.dec()

        def retry_s() -> int:
            return max(config.retry_after_s, math.ceil(service.wait_estimate_s(service.inflight)))

        def left_s() -> float | None:
            return None if deadline_s is None else max(0.0, deadline_s - (time.perf_counter() - t0))

        handed_off = False
        try:
            if deadline_s is not None and service.wait_estimate_s(answers_ahead) > deadline_s:
                est = service.wait_estimate_s(answers_ahead)
                free()
                return _refuse(endpoint, 503, "deadline", f"estimated wait {est * 1000:.0f} ms exceeds the {deadline_s * 1000:.0f} ms deadline", retry_s())
            loop = asyncio.get_running_loop()
            events: asyncio.Queue = asyncio.Queue()
            cancel = threading.Event()

            def emit(kind: str, payload: Any) -> None:  # worker thread -> event loop
                loop.call_soon_threadsafe(events.put_nowait, (kind, payload, time.perf_counter()))

            fut = service.submit(body, emit, cancel)
            fut.add_done_callback(lambda f: loop.call_soon_threadsafe(events.put_nowait, ("end", f, time.perf_counter())))
            try:
                kind, payload, t_started = await asyncio.wait_for(events.get(), left_s())
            except (asyncio.TimeoutError, TimeoutError):
                cancel.set()
                fut.cancel()  # still queued: never runs; already started: stops at its first token
                free()
                return _refuse(endpoint, 503, "deadline", f"not started within the {deadline_s * 1000:.0f} ms deadline", retry_s())
            if kind == "end":  # failed before it started
                payload.result()
            queue_s = t_started - t0
            rid = uuid.uuid4().hex

            def finish(f: Future, ttft_s: float | None) -> dict:
                result, run_s = f.result()
                free(run_s)
                total = time.perf_counter() - t0
                out = result_payload(result, queue_s, total, ttft_s, body.return_passages)
                for stage, ms in out["timings_ms"].items():
                    metrics.answer_stage.labels(stage).observe(ms / 1000.0)
                metrics.answer_tokens.labels("prompt").inc(result.generation.prompt_tokens)
                metrics.answer_tokens.labels("completion").inc(result.generation.completion_tokens)
                metrics.latency.labels(endpoint).observe(total)
                return {"id": rid, **out}

            if not body.stream:
                ttft_s = None
                while True:
                    try:
                        kind, payload, t = await asyncio.wait_for(events.get(), left_s())
                    except (asyncio.TimeoutError, TimeoutError):
                        cancel.set()
                        free()
                        return _refuse(endpoint, 503, "deadline", f"not answered within the {deadline_s * 1000:.0f} ms deadline", retry_s())
                    if kind == "token" and ttft_s is None:
                        ttft_s = t - t0
                    if kind == "end":
                        if not payload.cancelled() and isinstance(payload.exception(), AnswerCancelled):
                            free()
                            return _refuse(endpoint, 503, "deadline", "stopped at the deadline", retry_s())
                        out = finish(payload, ttft_s)
                        metrics.requests.labels(endpoint, "200").inc()
                        return JSONResponse(out)

            async def stream():
                ttft_s = None
                try:
                    yield _sse("start", {"id": rid, "queue_ms": queue_s * 1000.0, "model": service.name})
                    while True:
                        try:
                            kind, payload, t = await asyncio.wait_for(events.get(), left_s())
                        except (asyncio.TimeoutError, TimeoutError):
                            cancel.set()
                            metrics.rejected.labels("deadline").inc()
                            yield _sse("error", {"error": {"type": "deadline", "message": f"stopped at the {deadline_s * 1000:.0f} ms deadline"}})
                            return
                        if kind == "token":
                            if ttft_s is None:
                                ttft_s = t - t0
                            yield _sse("token", {"text": payload})
                        elif kind == "end":
                            exc = None if payload.cancelled() else payload.exception()
                            if exc is not None:
                                if not isinstance(exc, AnswerCancelled):
                                    log.error("ragfix serve: answer %s failed", rid, exc_info=exc)
                                yield _sse("error", {"error": {"type": "internal_error", "message": "the answer failed; the server log has the details",
                                                               "request_id": rid}})
                                return
                            yield _sse("done", finish(payload, ttft_s))
                            return
                finally:
                    cancel.set()  # the client went away mid-stream, or the stream ended: no more tokens
                    free()

            handed_off = True
            metrics.requests.labels(endpoint, "200").inc()
            return StreamingResponse(stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finally:
            if not handed_off:
                free()

    async def _batched(endpoint: str, request: Request, items: list, texts: list[str]) -> tuple[Any, list | None, JSONResponse | None]:
        """Admission, limits, deadline and the batcher for the specialist endpoints: (service, rows, None) or (.., None, refusal)."""
        t0 = time.perf_counter()

        def refuse(status: int, reason: str, message: str, retry: int | None = None, close: bool = False) -> tuple:
            metrics.endpoint_rejected.labels(endpoint, reason).inc()
            return None, None, _refuse(endpoint, status, reason, message, retry, close)

        if state.draining:
            return refuse(503, "draining", "the server is shutting down; retry on another instance", config.retry_after_s, close=True)
        if not state.ready:
            return refuse(503, "loading", state.load_error or "the models are loading", config.retry_after_s)
        if endpoint not in specialist:
            key = {"/v1/retrieve": "retrieve", "/v1/score/faithfulness": "faithfulness", "/v1/classify/intent": "intent"}[endpoint]
            metrics.requests.labels(endpoint, "404").inc()
            return None, None, _error(404, "not_enabled", f"{endpoint} is off on this server; start it with {key}: true "
                                      f"(configs/serve.yaml) or --{key}")
        service, batcher = specialist[endpoint]
        if len(items) > config.max_items:
            return refuse(413, "too_many_items", f"{len(items)} items; the limit is {config.max_items} (max_items)")
        longest = max((len(t) for t in texts), default=0)
        if longest > config.max_text_chars:
            return refuse(413, "text_too_long", f"a text of {longest} characters; the limit is {config.max_text_chars} (max_text_chars)")
        try:
            deadline_s = _deadline_s(request)
        except ValueError as exc:
            return refuse(400, "invalid_request", str(exc))

        def retry_s() -> int:
            return max(config.retry_after_s, math.ceil(batcher.wait_estimate_s()))

        ahead = state.admit(config.max_queue)
        if ahead is None:
            return refuse(429, "queue_full", f"{config.max_queue} requests already queued (max_queue); retry after the Retry-After seconds",
                          retry_s())
        metrics.queue_depth.inc()
        metrics.endpoint_queue_depth.labels(endpoint).inc()
        try:
            est = batcher.wait_estimate_s(len(items))
            if deadline_s is not None and est > deadline_s:
                return refuse(503, "deadline", f"estimated wait {est * 1000:.0f} ms exceeds the {deadline_s * 1000:.0f} ms deadline", retry_s())
            fut = batcher.submit(items)
            left = None if deadline_s is None else max(0.0, deadline_s - (time.perf_counter() - t0))
            try:
                rows, queue_s, compute_s = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), left)
            except (asyncio.TimeoutError, TimeoutError):
                fut.cancel()  # not started yet: the batcher skips it
                return refuse(503, "deadline", f"not answered within the {deadline_s * 1000:.0f} ms deadline", retry_s())
        finally:
            state.release(None, ahead)
            metrics.queue_depth.dec()
            metrics.endpoint_queue_depth.labels(endpoint).dec()
        total = time.perf_counter() - t0
        for stage, sec in (("queue", queue_s), ("compute", compute_s), ("total", total)):
            metrics.endpoint_stage.labels(endpoint, stage).observe(sec)
        metrics.latency.labels(endpoint).observe(total)
        metrics.requests.labels(endpoint, "200").inc()
        request.state.timings_ms = {"queue": queue_s * 1000.0, "compute": compute_s * 1000.0, "total": total * 1000.0}
        return service, rows, None

    @app.post("/v1/retrieve", dependencies=[Depends(require_token)])
    async def retrieve(body: RetrieveRequest, request: Request) -> Any:
        if body.top_k > config.retrieve_max_k:
            metrics.requests.labels("/v1/retrieve", "422").inc()
            return _error(422, "invalid_request", f"top_k={body.top_k} is over this server's retrieve_max_k={config.retrieve_max_k}; ask for fewer",
                          details=[{"loc": ["body", "top_k"], "msg": f"must be <= {config.retrieve_max_k}"}])
        service, rows, refusal = await _batched("/v1/retrieve", request, [(body.query, body.top_k)], [body.query])
        if refusal is not None:
            return refusal
        return {"id": uuid.uuid4().hex, "results": service.payload(rows[0], body.return_texts),
                "meta": {"retriever": service.name, "corpus_size": len(service.corpus), "shared_with_answer": service.shared,
                         "timings_ms": request.state.timings_ms}}

    @app.post("/v1/score/faithfulness", dependencies=[Depends(require_token)])
    async def score_faithfulness(body: FaithfulnessRequest, request: Request) -> Any:
        texts = [t for it in body.items for t in (it.question, it.answer, *it.evidence())]
        service, rows, refusal = await _batched("/v1/score/faithfulness", request, [(it, body.check_claims) for it in body.items], texts)
        if refusal is not None:
            return refusal
        return {"id": uuid.uuid4().hex, "results": [{"index": i, **row, "threshold": service.threshold} for i, row in enumerate(rows)],
                "meta": {"model": service.name, "threshold": service.threshold, "timings_ms": request.state.timings_ms}}

    @app.post("/v1/classify/intent", dependencies=[Depends(require_token)])
    async def classify_intent(body: IntentRequest, request: Request) -> Any:
        service, rows, refusal = await _batched("/v1/classify/intent", request, list(body.texts), list(body.texts))
        if refusal is not None:
            return refusal
        m = service.model
        return {"id": uuid.uuid4().hex, "results": [{"index": i, **row} for i, row in enumerate(rows)],
                "meta": {"model": service.name, "oos_threshold": float(m.oos_threshold), "oos_label": m.oos_label,
                         "n_intents": int(len(m.classifier.classes_)), "timings_ms": request.state.timings_ms}}

    app.add_middleware(_BodyLimit, limit=config.max_body_bytes, on_reject=lambda: metrics.rejected.labels("too_large").inc())
    return app
