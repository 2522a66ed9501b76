"""The retrieve -> (rerank) -> generate pipeline, every stage timed (wall and CPU) and counted.

Per-stage timing is the diagnostic for Reranker on the Request Path (VIII): you cannot move the
rerank stage off the critical path until you can see its share of each request.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from generate.backends import Generation, LLMBackend
from generate.prompt import build_messages, parse_citations
from rerank.cross_encoder import CrossEncoderReranker
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


@contextmanager
def _timed(timings: list[StageTiming], stage: str, counts: dict) -> Iterator[dict]:
    w0, c0 = time.perf_counter(), time.process_time()
    yield counts
    timings.append(StageTiming(stage, time.perf_counter() - w0, time.process_time() - c0, dict(counts)))


class Pipeline:
    """``Pipeline(retriever, llm, reranker=None).index(corpus).run(query)``.

    Args:
        retriever: any first stage (BM25, dense, hybrid).
        llm: any :class:`generate.LLMBackend`.
        reranker: optional cross-encoder; without one the first-stage order is used.
        retrieve_k: candidates from the first stage (what the reranker scores).
        context_k: passages given to the LLM.
        max_new_tokens: answer length cap.
        overlap_prefill: prefill [system + question] on a second thread while the reranker runs, then
            continue from that KV cache (needs a backend with ``prefill``/``prompt_prefix``; the prompt is
            question-first). The fix for Reranker on the Request Path (VIII) that takes work off the
            critical path rather than making it smaller.
        order: context order of the passages (:data:`generate.ordering.ORDERS`; ``"curve"`` needs ``curve``).
        gate: optional :class:`generate.gate.FaithfulnessGate`; its verdict is returned, and with
            ``gate_policy`` other than ``"none"`` the policy's answer replaces a failing one (II).
    """

    def __init__(self, retriever: Retriever, llm: LLMBackend, reranker: CrossEncoderReranker | None = None,
                 retrieve_k: int = 20, context_k: int = 3, max_new_tokens: int = 48, max_words_per_passage: int = 120,
                 overlap_prefill: bool = False, order: str = "rank", curve: Sequence[float] | None = None,
                 gate=None, gate_policy: str = "none") -> None:
        from generate.gate import POLICIES
        from generate.ordering import ORDERS

        if context_k < 1 or retrieve_k < context_k:
            raise ValueError(f"need 1 <= context_k <= retrieve_k, got context_k={context_k}, retrieve_k={retrieve_k}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if gate_policy not in POLICIES:
            raise ValueError(f"gate_policy must be one of {', '.join(POLICIES)}, got {gate_policy!r}")
        if overlap_prefill and not hasattr(llm, "prefill"):
            raise ValueError(f"overlap_prefill needs a backend with prefill(); {type(llm).__name__} has none")
        self.retriever, self.llm, self.reranker = retriever, llm, reranker
        self.retrieve_k, self.context_k = retrieve_k, context_k
        self.max_new_tokens, self.max_words_per_passage = max_new_tokens, max_words_per_passage
        self.overlap_prefill, self.order, self.curve = overlap_prefill, order, curve
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

    def run(self, query: str, history: Sequence[dict] | None = None) -> PipelineResult:
        """One request; ``history`` holds the conversation's earlier turns (part of the prefill-overlap prefix)."""
        from generate.ordering import reorder

        if not self.corpus:
            raise RuntimeError("Pipeline.run called before index(corpus)")
        if not query.strip():
            raise ValueError("query is empty")
        t_start = time.perf_counter()
        timings: list[StageTiming] = []
        with _timed(timings, "retrieve", {"candidates": 0}) as c:
            res = self.retriever.search([query], self.retrieve_k)
            cands = [self.corpus[int(i)] for i in res.indices[0] if i >= 0]
            c["candidates"] = len(cands)
        prefix_fut = None
        if self._prefill_pool is not None:
            # The [system + history + question] prefix does not depend on the passages: start it now.
            probe = self._messages(query, [Document("-", "-")], history)
            prefix_fut = self._prefill_pool.submit(lambda: self.llm.prefill(self.llm.prompt_prefix(probe)))
        if self.reranker is not None and cands:
            with _timed(timings, "rerank", {"pairs": len(cands)}):
                cands = self.reranker.rank(query, cands).documents
        prefix = None
        if prefix_fut is not None:
            with _timed(timings, "prefix_wait", {}) as c:
                prefix = prefix_fut.result()
                c.update(prefix_tokens=len(prefix.ids), prefix_prefill_s=round(prefix.prefill_s, 4))
        passages = reorder(cands[: self.context_k], self.order, self.curve)
        with _timed(timings, "generate", {}) as c:
            messages = self._messages(query, passages, history)
            gen = self.llm.generate(messages, max_new_tokens=self.max_new_tokens,
                                    **({"prefix": prefix} if prefix is not None else {}))
            ttft = time.perf_counter() - t_start - gen.decode_s
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
        if self._prefill_pool is not None:
            self._prefill_pool.shutdown(wait=True)
