"""``/v1/answer``: the product :class:`pipeline.Pipeline` (retrieve -> fused rerank -> generate) behind the server.

The pipeline is built once at start from the ``answer_*`` settings (``configs/serve.yaml``): a
first stage over ``answer_corpus`` (BM25 + MiniLM hybrid, the measured configuration, BM25 or dense),
the measured rerank stage (:class:`rerank.stage.FusedRerankStage`) whose cross-encoder is the
server's own scorer (so an answer's rerank pairs share micro-batched forward passes with
``/v1/rerank`` requests), and the generator: a registry LLM in process
(:class:`generate.TransformersBackend`, SmolLM2 by default) or, with ``answer_llm_url``, any
OpenAI-compatible server (llama.cpp, vLLM) through :class:`generate.OpenAICompatBackend`.

Answers run on ``answer_workers`` threads (one by default: on CPU two generations at once only
share the cores). A job can be cancelled before it starts (its future) or between tokens (its
``cancel`` event: the client went away or the deadline passed); the stop is raised from the
pipeline's ``on_token`` callback, so no more tokens are decoded.

Failure it guards against: an answer endpoint with no bound on queued generations (each one is
seconds of CPU) turns a burst into minutes of latency; admission, the wait estimate
(:class:`AnswerService` keeps its own seconds-per-answer, apart from the rerank one) and the
deadline are the same as ``/v1/rerank``'s (:mod:`serve.app`).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rerank.cross_encoder import PairRanker
from serve.config import ServeConfig

__all__ = ["AnswerRequest", "AnswerCancelled", "AnswerService", "ScorerRanker", "build_pipeline", "build_answer_service",
           "resolve_corpus", "result_payload", "declared_prefixes"]


class HistoryTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str


class AnswerRequest(BaseModel):
    """``{"query": ..., "stream": true, "max_tokens": 32, "history": [...], "return_passages": true}``."""

    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1)
    stream: bool = True
    max_tokens: int | None = Field(default=None, ge=1)
    history: list[HistoryTurn] | None = Field(default=None, max_length=32)
    return_passages: bool = True

    def texts(self) -> list[str]:
        """Every client text (for the ``max_text_chars`` limit)."""
        return [self.query] + [t.content for t in self.history or []]


class AnswerCancelled(Exception):
    """Raised from the token callback to stop a running answer (client gone or deadline passed)."""


class ScorerRanker(PairRanker):
    """A :class:`rerank.PairRanker` over the server's scorer: ``score_pairs`` goes through the micro-batcher
    (or the per-request pool of the naive server) and waits for its logits."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.name = scorer.name

    def score_pairs(self, pairs):  # type: ignore[override]
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.scorer.submit(list(pairs)).result(), dtype=np.float32)


def resolve_corpus(spec: str) -> Path:
    """``answer_corpus`` -> a documents JSONL: a file, a folder holding ``corpus.jsonl``, or a data set
    name under the data root (``$RAGFIX_DATA``). Raises ``FileNotFoundError`` naming what was tried."""
    from data import data_root

    tried = []
    for cand in (Path(spec), Path(spec) / "corpus.jsonl", data_root() / spec / "corpus.jsonl"):
        tried.append(str(cand))
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"answer_corpus={spec!r}: no corpus at {', '.join(tried)}; give a documents JSONL, "
                            "a BEIR folder or a data set name under $RAGFIX_DATA")


def build_llm(config: ServeConfig) -> Any:
    """The generator: ``answer_llm_url`` set -> :class:`generate.OpenAICompatBackend`; else ``registry.load_llm(answer_llm)``."""
    if config.answer_llm_url:
        from generate.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(config.answer_llm_url, model=config.answer_llm, api_key_env=config.answer_llm_key_env,
                                   timeout=max(10.0, config.deadline_ms / 1000.0 if config.deadline_ms else 120.0))
    from registry import load_llm

    return load_llm(config.answer_llm, threads=config.torch_threads)


def build_pipeline(config: ServeConfig, scorer: Any, llm: Any = None) -> Any:
    """The product pipeline for ``config``'s ``answer_*`` settings, indexed over its corpus."""
    from data import load_documents_jsonl
    from pipeline import Pipeline
    from rerank.stage import FusedRerankStage
    from serve.specialists import build_retriever

    docs = load_documents_jsonl(resolve_corpus(config.answer_corpus))
    if config.answer_corpus_limit:
        docs = docs[: config.answer_corpus_limit]
    retriever = build_retriever(config)
    k = min(config.answer_retrieve_k, len(docs))
    pipe = Pipeline(retriever, llm if llm is not None else build_llm(config), reranker=FusedRerankStage(ScorerRanker(scorer)),
                    retrieve_k=k, context_k=min(config.answer_context_k, k), max_new_tokens=config.answer_max_tokens)
    return pipe.index(docs)


class AnswerService:
    """Runs pipeline answers on a small pool, with cancellation and a seconds-per-answer estimate.

    ``submit(request, emit, cancel)`` queues one answer and returns its future (a
    :class:`pipeline.PipelineResult`). ``emit(kind, payload)`` is called from the worker thread:
    ``("started", None)`` when the job leaves the queue, then ``("token", delta)`` per text delta.
    Setting ``cancel`` stops the job at its next token with :class:`AnswerCancelled`.
    """

    def __init__(self, pipeline: Any, workers: int = 1, warmer: Any = None, llm_server: Any = None) -> None:
        self.pipeline = pipeline
        self.llm_server = llm_server  # generate.llama_server.LlamaCppServer this service launched (or None)
        self.warmer = warmer  # generate.warm_prefix.PrefixWarmer keeping the declared prefixes warm (or None)
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="ragfix-answer")
        self.lock = threading.Lock()
        self.inflight = 0
        self.sec_per_answer = 1.0  # replaced by the warm-up answer's time at load
        self.name = f"{getattr(pipeline.llm, 'name', type(pipeline.llm).__name__)}"

    def admit(self) -> int:
        """Count one more answer admitted; returns how many were ahead of it."""
        with self.lock:
            ahead = self.inflight
            self.inflight += 1
            return ahead

    def release(self, run_s: float | None = None) -> None:
        """One admitted answer is done; ``run_s`` (its time on a worker, finished answers only) updates the estimate."""
        with self.lock:
            self.inflight -= 1
            if run_s is not None:
                self.sec_per_answer = 0.8 * self.sec_per_answer + 0.2 * run_s

    def wait_estimate_s(self, ahead: int) -> float:
        """Seconds until an answer with ``ahead`` answers before it is done (the workers share the queue)."""
        return (ahead // self.workers + 1) * self.sec_per_answer

    def submit(self, req: AnswerRequest, emit: Callable[[str, Any], None], cancel: threading.Event) -> Future:
        history = [t.model_dump() for t in req.history] if req.history else None

        def on_token(delta: str) -> None:
            if cancel.is_set():
                raise AnswerCancelled("cancelled")
            emit("token", delta)

        def job() -> Any:
            if cancel.is_set():
                raise AnswerCancelled("cancelled before it started")
            emit("started", None)
            t0 = time.perf_counter()
            result = self.pipeline.run(req.query, history=history, on_token=on_token, max_new_tokens=req.max_tokens)
            return result, time.perf_counter() - t0

        return self.pool.submit(job)

    def warm(self) -> float:
        """Two short answers end to end: the first pays the one-off costs (lazy loads, allocator), the
        second's time is the first wait estimate (answered requests refine it); returns its seconds."""
        self.pipeline.run("warm-up question", max_new_tokens=1)
        t0 = time.perf_counter()
        self.pipeline.run("warm-up question about a second topic", max_new_tokens=2)
        self.sec_per_answer = time.perf_counter() - t0
        return self.sec_per_answer

    def close(self) -> None:
        if self.warmer is not None:
            self.warmer.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pipeline.close()
        if self.llm_server is not None:
            self.llm_server.stop()


def declared_prefixes(config: ServeConfig, pipeline: Any) -> list:
    """``warm_prefixes`` -> :class:`generate.warm_prefix.WarmPrefix` list, rendered as the pipeline renders its prompts.

    Each entry is the system prompt (``system``, default the pipeline's) and, with ``documents``, a
    user message starting ``Passages:`` with those documents as passages ``[1]..[n]``: the prefix
    of every answer whose reranked context starts with them. Raises ``ValueError`` naming an id
    missing from ``answer_corpus``.
    """
    from generate.prompt import SYSTEM_PROMPT, build_messages
    from generate.warm_prefix import WarmPrefix

    by_id = {d.id: d for d in pipeline.corpus}
    out = []
    for i, e in enumerate(config.warm_prefixes or []):
        system = e.get("system") or SYSTEM_PROMPT
        missing = [str(d) for d in e.get("documents", []) if str(d) not in by_id]
        if missing:
            raise ValueError(f"warm_prefixes[{i}] ({e['name']!r}): document ids {missing} are not in answer_corpus={config.answer_corpus!r}")
        docs = [by_id[str(d)] for d in e.get("documents", [])]
        if docs:
            msgs = build_messages("-", docs, pipeline.max_words_per_passage, system=system)
            user = msgs[-1]["content"]
            messages = (msgs[0], {"role": "user", "content": user[: user.rindex("\n\nQuestion:")]})
        else:
            messages = ({"role": "system", "content": system},)
        out.append(WarmPrefix(e["name"], messages))
    return out


def build_answer_service(config: ServeConfig, scorer: Any) -> AnswerService:
    """Load the pipeline for ``config`` over ``scorer`` and warm it (the app calls this at start when ``answer`` is on).

    With ``answer_llm_server: llama-cpp`` it first launches llama-cpp-python's server
    (:class:`generate.llama_server.LlamaCppServer`, the registry GGUF of ``answer_llm``) on a free
    loopback port and answers through it; its log's prompt-cache counts then appear in ``/metrics``.
    With ``warm_prefixes``, a :class:`generate.warm_prefix.PrefixWarmer` warms them before the
    warm-up answers and then every ``warm_interval_s``.
    """
    import dataclasses
    import os

    llm_server = None
    if config.answer_llm_server == "llama-cpp":
        from generate.llama_server import LlamaCppServer
        from registry import Registry

        spec = Registry().resolve(config.answer_llm, "llm")
        if spec.path is None or not str(spec.path).endswith(".gguf"):
            raise ValueError(f"answer_llm_server: llama-cpp needs a GGUF model; answer_llm={config.answer_llm!r} is {spec.path or spec.hub_id}")
        llm_server = LlamaCppServer(spec.path, alias=config.answer_llm, threads=config.torch_threads or 1).start()
        import logging

        logging.getLogger("ragfix.serve").info("ragfix serve: llama.cpp server pid %d on %s (%s)", llm_server.proc.pid,
                                               llm_server.base_url, spec.path.name)
        config = dataclasses.replace(config, answer_llm_url=llm_server.base_url)
    try:
        pipe = build_pipeline(config, scorer)
    except BaseException:
        if llm_server is not None:
            llm_server.stop()
        raise
    warmer = None
    if config.warm_prefixes:
        from generate.warm_prefix import PrefixWarmer

        key = os.environ.get(config.answer_llm_key_env) if config.answer_llm_key_env else None
        warmer = PrefixWarmer(config.answer_llm_url or "", config.answer_llm, declared_prefixes(config, pipe),
                              interval_s=config.warm_interval_s, api_key=key).start()
    service = AnswerService(pipe, config.answer_workers, warmer, llm_server)
    service.warm()
    return service


def result_payload(result: Any, queue_s: float, total_s: float, ttft_s: float | None, return_passages: bool) -> dict:
    """The non-streaming response body, also the ``done`` event of a stream: answer, citations, passages,
    usage and per-stage wall milliseconds (``queue``, each pipeline stage, ``ttft``, ``total``)."""
    timings = {"queue": queue_s * 1000.0}
    for t in result.timings:
        timings[t.stage] = t.wall_s * 1000.0
    timings["ttft"] = (ttft_s if ttft_s is not None else queue_s + result.ttft_s) * 1000.0
    timings["total"] = total_s * 1000.0
    g = result.generation
    body: dict = {"answer": result.answer, "citations": list(result.cited_ids), "model": g.model,
                  "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens},
                  "timings_ms": timings,
                  "stages": [{"stage": t.stage, "wall_ms": t.wall_s * 1000.0, "cpu_ms": t.cpu_s * 1000.0, "counts": t.counts}
                             for t in result.timings]}
    if return_passages:
        body["passages"] = [{"id": d.id, "title": d.title, "text": d.text} for d in result.passages]
    if result.gate is not None:
        body["gate"] = {"verdict": getattr(result.gate, "verdict", None)}
    return body
