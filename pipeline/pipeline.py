"""The retrieve -> (rerank) -> generate pipeline, every stage timed (wall and CPU) and counted.

Per-stage timing is the diagnostic for Reranker on the Request Path (VIII): you cannot move the
rerank stage off the critical path until you can see its share of each request.

The rerank stage is, by default, the measured one: a cross-encoder passed as ``reranker`` is wrapped
in :class:`rerank.stage.FusedRerankStage` (its logit fused with the first stage's BM25 and dense
scores by z-score CombSUM), the configuration ``ragfix train eval-reranker`` reports as
``specialist`` (0.755 nDCG@10 on SciFact test over the hybrid top 100, where the cross-encoder
alone scores 0.689, below the hybrid's 0.715). For that configuration the first stage must be a
``retrieval.HybridRetriever`` (BM25 + dense), which returns each component's score per candidate;
any other retriever's own score is the one first-stage signal.

Example::

    >>> hybrid = HybridRetriever([BM25Retriever(), DenseRetriever(embedder)], names=("bm25", "dense"))  # doctest: +SKIP
    >>> pipe = Pipeline(hybrid, llm, reranker=CrossEncoderReranker("models/reranker-minilm-l6")).index(docs)  # doctest: +SKIP
    >>> pipe.rank("what causes scurvy")[:3]              # the stage's ranking, no LLM call   # doctest: +SKIP
    >>> pipe.run("what causes scurvy").answer                                                  # doctest: +SKIP
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from generate.backends import Generation, LLMBackend
from generate.prompt import build_messages, parse_citations
from rerank.stage import FusedRerankStage
from retrieval.retrievers import Retriever
from retrieval.types import Document

__all__ = ["Pipeline", "PipelineResult", "StageTiming"]


@dataclass(frozen=True)
class StageTiming:
    stage: str
    wall_s: float
    cpu_s: float  # process CPU seconds (all threads): > wall_s means the stage ran on several cores
    counts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineResult:
    query: str
    answer: str
    passages: list[Document]
    cited_ids: list[str]
    timings: list[StageTiming]
    generation: Generation
    ttft_s: float = 0.0  # request start -> first answer token
    gate: object | None = None  # generate.gate.GateResult when the pipeline has a gate

    @property
    def total_s(self) -> float:
        return sum(t.wall_s for t in self.timings)

    def timing(self, stage: str) -> StageTiming:
        for t in self.timings:
            if t.stage == stage:
                return t
        raise KeyError(f"no stage {stage!r}; stages: {[t.stage for t in self.timings]}")


def _accepts_on_token(llm: Any) -> bool:
    """Whether ``llm.generate`` takes ``on_token`` (streaming); a backend without it answers in one piece."""
    import inspect

    try:
        params = inspect.signature(llm.generate).parameters
    except (TypeError, ValueError):
        return False
    return "on_token" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@contextmanager
def _timed(timings: list[StageTiming], stage: str, counts: dict) -> Iterator[dict]:
    w0, c0 = time.perf_counter(), time.process_time()
    yield counts
    timings.append(StageTiming(stage, time.perf_counter() - w0, time.process_time() - c0, dict(counts)))


def _accepts(fn: Callable, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _PassageStream:
    """The streaming overlap's chain: each context passage, once its place is fixed, extends the prefilled
    prompt on the prefill thread (places in prompt order; a place reported early waits for those before it)."""

    def __init__(self, pipe: "Pipeline", query: str, history, first) -> None:
        self.pipe, self.query, self.history = pipe, query, history
        self.last = first  # future of the newest prefix in the chain
        self.placed: dict[int, Document] = {}
        self.sent = 0

    def fixed(self, place: int, doc: Document) -> None:
        """The stage fixed ``doc`` at ``place`` (0 = top); submit every passage now contiguous from the top."""
        if place >= self.pipe.context_k or place in self.placed:
            return
        self.placed[place] = doc
        while self.sent in self.placed:
            self.sent += 1
            passages = [self.placed[i] for i in range(self.sent)]
            prev, llm = self.last, self.pipe.llm

            def extend(prev=prev, passages=passages):
                ids = llm.prompt_through_passages(self.pipe._messages(self.query, passages, self.history))
                return llm.prefill(ids, prefix=prev.result())

            self.last = self.pipe._prefill_pool.submit(extend)


class Pipeline:
    """``Pipeline(retriever, llm, reranker=None).index(corpus).run(query)``.

    Args:
        retriever: any first stage (BM25, dense, hybrid); a ``retrieval.HybridRetriever`` also
            supplies each component's score per candidate, which the fused rerank stage needs to be
            the measured configuration.
        llm: any :class:`generate.LLMBackend`; ``None`` builds a retrieve-and-rerank pipeline whose
            :meth:`rank` works and whose :meth:`run` raises.
        reranker: optional. A :class:`rerank.stage.FusedRerankStage` is used as it is; any other
            ranker with ``score_pairs`` (a :class:`rerank.CrossEncoderReranker`, a
            :class:`rerank.RerankEngine`) is wrapped in ``FusedRerankStage(reranker)`` (the measured
            stage) unless ``fuse=False``; an object with only ``rank(query, docs)`` (a cascade) ranks alone.
            Without a reranker the first-stage order is used.
        fuse: ``False`` ranks by the cross-encoder alone (scored *below* no reranking on SciFact;
            kept for latency benchmarks and ablations).
        retrieve_k: candidates from the first stage (what the reranker scores; 100, the depth the
            rerank stage was measured at).
        context_k: passages given to the LLM.
        max_new_tokens: answer length cap.
        overlap_prefill: prefill [system + question] on a second thread while the reranker runs, then
            continue from that KV cache (needs a backend with ``prefill``/``prompt_prefix``; the prompt is
            question-first). The fix for Reranker on the Request Path (VIII) that takes work off the
            critical path rather than making it smaller. ``"stream"``: as ``True``, and the prefill thread
            then continues with each context passage as soon as the rerank stage has fixed its place,
            while the stage is still running (in prompt order; a stage whose ``rank`` takes ``on_fixed``
            reports places as it fixes them); places fixed only when the stage returns are left to
            ``generate``, which prefills them in one pass (needs ``prompt_through_passages`` too; ``bench pipeline --stream-overlap``
            measures its TTFT against the prefix-only overlap, paired).
        order: context order of the passages (:data:`generate.ordering.ORDERS`; ``"curve"`` needs ``curve``).
        gate: optional :class:`generate.gate.FaithfulnessGate`; its verdict is returned, and with
            ``gate_policy`` other than ``"none"`` the policy's answer replaces a failing one (II).
    """

    def __init__(self, retriever: Retriever, llm: LLMBackend | None, reranker: Any = None,
                 retrieve_k: int = 100, context_k: int = 3, max_new_tokens: int = 48, max_words_per_passage: int = 120,
                 overlap_prefill: bool = False, order: str = "rank", curve: Sequence[float] | None = None,
                 gate=None, gate_policy: str = "none", fuse: bool = True) -> None:
        from generate.gate import POLICIES
        from generate.ordering import ORDERS

        if context_k < 1 or retrieve_k < context_k:
            raise ValueError(f"need 1 <= context_k <= retrieve_k, got context_k={context_k}, retrieve_k={retrieve_k}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if gate_policy not in POLICIES:
            raise ValueError(f"gate_policy must be one of {', '.join(POLICIES)}, got {gate_policy!r}")
        if overlap_prefill not in (False, True, "stream"):
            raise ValueError(f"overlap_prefill must be False, True or 'stream', got {overlap_prefill!r}")
        if overlap_prefill and not hasattr(llm, "prefill"):
            raise ValueError(f"overlap_prefill needs a backend with prefill(); {type(llm).__name__} has none")
        if overlap_prefill == "stream" and not hasattr(llm, "prompt_through_passages"):
            raise ValueError(f"overlap_prefill='stream' needs a backend with prompt_through_passages(); "
                             f"{type(llm).__name__} has none (use overlap_prefill=True)")
        if reranker is not None and not isinstance(reranker, FusedRerankStage):
            if fuse and hasattr(reranker, "score_pairs"):
                reranker = FusedRerankStage(reranker)
            elif not hasattr(reranker, "rank"):
                raise TypeError(f"Pipeline: reranker must have score_pairs or rank(query, docs), got {type(reranker).__name__}")
        self.retriever, self.llm, self.reranker = retriever, llm, reranker
        # What the stage's rank() takes, read once here rather than inspected on every request.
        self._rank_takes = {n for n in ("on_fixed", "first_stage") if reranker is not None and _accepts(reranker.rank, n)}
        self.retrieve_k, self.context_k = retrieve_k, context_k
        self.max_new_tokens, self.max_words_per_passage = max_new_tokens, max_words_per_passage
        self.overlap_prefill, self.order, self.curve = bool(overlap_prefill), order, curve
        self.stream_prefill = overlap_prefill == "stream"
        self.gate, self.gate_policy = gate, gate_policy
        self.corpus: list[Document] = []
        self._prefill_pool = ThreadPoolExecutor(1, thread_name_prefix="prefill") if overlap_prefill else None

    def index(self, corpus: Sequence[Document]) -> "Pipeline":
        self.corpus = list(corpus)
        self.retriever.index(self.corpus)
        return self

    def _messages(self, query: str, passages: Sequence[Document], history: Sequence[dict] | None = None) -> list[dict]:
        return build_messages(query, passages, self.max_words_per_passage, question_first=self.overlap_prefill,
                              history=history)

    def _retrieve(self, query: str, timings: list[StageTiming]) -> tuple[list[Document], dict[str, np.ndarray]]:
        """First-stage candidates and, per candidate, each first-stage signal (name -> scores)."""
        if not self.corpus:
            raise RuntimeError("Pipeline: index(corpus) must be called before rank() or run()")
        if not query.strip():
            raise ValueError("query is empty")
        with _timed(timings, "retrieve", {"candidates": 0}) as c:
            search_with_signals = getattr(self.retriever, "search_with_signals", None)
            if search_with_signals is not None:
                res = search_with_signals([query], self.retrieve_k)
                keep = res.indices[0] >= 0
                signals = {name: np.asarray(s[0][keep], dtype=np.float64) for name, s in res.signals.items()}
            else:
                res = self.retriever.search([query], self.retrieve_k)
                keep = res.indices[0] >= 0
                signals = {str(getattr(self.retriever, "name", "first_stage")): np.asarray(res.scores[0][keep], dtype=np.float64)}
            cands = [self.corpus[int(i)] for i in res.indices[0][keep]]
            c["candidates"] = len(cands)
        return cands, signals

    def _rerank(self, query: str, cands: list[Document], signals: dict[str, np.ndarray],
                timings: list[StageTiming], on_fixed: Callable[[int, Document], None] | None = None) -> list[Document]:
        if self.reranker is None or not cands:
            return cands
        with _timed(timings, "rerank", {"pairs": len(cands)}):
            extra = {"on_fixed": on_fixed} if on_fixed is not None and "on_fixed" in self._rank_takes else {}
            if isinstance(self.reranker, FusedRerankStage) or "first_stage" in self._rank_takes:
                return self.reranker.rank(query, cands, signals, **extra).documents  # e.g. rerank.PrunedRerank
            return self.reranker.rank(query, cands, **extra).documents

    def rank(self, query: str) -> list[Document]:
        """The first stage's candidates in the rerank stage's order (no LLM call): what ``run`` answers from."""
        timings: list[StageTiming] = []
        cands, signals = self._retrieve(query, timings)
        return self._rerank(query, cands, signals, timings)

    def run(self, query: str, history: Sequence[dict] | None = None, on_token: Callable[[str], None] | None = None,
            max_new_tokens: int | None = None) -> PipelineResult:
        """One request; ``history`` holds the conversation's earlier turns (part of the prefill-overlap prefix).

        ``on_token(delta)`` streams the answer as the LLM decodes it (the backend's ``generate`` must
        accept ``on_token``, as :class:`generate.TransformersBackend` and
        :class:`generate.OpenAICompatBackend` do; otherwise the whole answer is passed once when it is
        done). It may raise to stop the request (the exception propagates). With a gate whose policy
        replaces a failing answer, the streamed text is the draft and ``PipelineResult.answer`` the
        final one. ``max_new_tokens`` caps this request's answer (default: the pipeline's).
        """
        from generate.ordering import reorder

        if self.llm is None:
            raise RuntimeError("Pipeline.run needs an llm; this pipeline was built with llm=None (use rank())")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 or None (the pipeline's {self.max_new_tokens}), got {max_new_tokens}")
        n_new = max_new_tokens if max_new_tokens is not None else self.max_new_tokens
        streams = on_token is not None and _accepts_on_token(self.llm)
        t_start = time.perf_counter()
        timings: list[StageTiming] = []
        cands, signals = self._retrieve(query, timings)
        prefix_fut = None
        if self._prefill_pool is not None:
            # The [system + history + question] prefix does not depend on the passages: start it now.
            probe = self._messages(query, [Document("-", "-")], history)
            prefix_fut = self._prefill_pool.submit(lambda: self.llm.prefill(self.llm.prompt_prefix(probe)))
        stream = _PassageStream(self, query, history, prefix_fut) if self.stream_prefill and self.order == "rank" else None
        cands = self._rerank(query, cands, signals, timings, on_fixed=stream.fixed if stream else None)
        if stream is not None:
            # Places the stage did not report while it ran are left to generate: one forward over them is cheaper
            # than one per passage (measured: 3 extensions cost ~25% more than one pass) and nothing is left to overlap.
            prefix_fut = stream.last
        prefix = None
        if prefix_fut is not None:
            with _timed(timings, "prefix_wait", {}) as c:
                prefix = prefix_fut.result()
                c.update(prefix_tokens=len(prefix.ids), prefix_prefill_s=round(prefix.prefill_s, 4),
                         streamed_passages=stream.sent if stream is not None else 0)
        passages = reorder(cands[: self.context_k], self.order, self.curve)
        with _timed(timings, "generate", {}) as c:
            messages = self._messages(query, passages, history)
            gen = self.llm.generate(messages, max_new_tokens=n_new,
                                    **({"prefix": prefix} if prefix is not None else {}),
                                    **({"on_token": on_token} if streams else {}))
            ttft = time.perf_counter() - t_start - gen.decode_s
            if on_token is not None and not streams and gen.text:
                on_token(gen.text)
            c.update(prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                     prefill_s=round(gen.prefill_s, 4), decode_s=round(gen.decode_s, 4))
        answer, verdict = gen.text, None
        if self.gate is not None and passages:
            from generate.gate import apply_policy

            with _timed(timings, "gate", {}) as c:
                texts = [d.full_text() for d in passages]
                verdict = self.gate.check(query, answer, texts)
                regen = (lambda ps: self.llm.generate(self._messages(query, [Document(str(i), t) for i, t in enumerate(ps)], history),
                                                      max_new_tokens=self.max_new_tokens).text)
                answer, verdict = apply_policy(self.gate_policy, self.gate, query, texts, verdict, regenerate=regen)
                c.update(verdict=verdict.verdict, claims=len(verdict.claims))
        return PipelineResult(query, answer, passages, parse_citations(answer, passages), timings, gen, ttft, verdict)

    def close(self) -> None:
        """Stop the prefill thread (``overlap_prefill``); the pipeline is not used afterwards."""
        if self._prefill_pool is not None:
            self._prefill_pool.shutdown(wait=True)
