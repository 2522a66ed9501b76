"""The retrieve -> (rerank) -> generate pipeline, every stage timed (wall and CPU) and counted.

Per-stage timing is the diagnostic for Reranker on the Request Path (VIII): you cannot move the
rerank stage off the critical path until you can see its share of each request.
"""
from __future__ import annotations

import time
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
    """

    def __init__(self, retriever: Retriever, llm: LLMBackend, reranker: CrossEncoderReranker | None = None,
                 retrieve_k: int = 20, context_k: int = 3, max_new_tokens: int = 48, max_words_per_passage: int = 120) -> None:
        if context_k < 1 or retrieve_k < context_k:
            raise ValueError(f"need 1 <= context_k <= retrieve_k, got context_k={context_k}, retrieve_k={retrieve_k}")
        self.retriever, self.llm, self.reranker = retriever, llm, reranker
        self.retrieve_k, self.context_k = retrieve_k, context_k
        self.max_new_tokens, self.max_words_per_passage = max_new_tokens, max_words_per_passage
        self.corpus: list[Document] = []

    def index(self, corpus: Sequence[Document]) -> "Pipeline":
        self.corpus = list(corpus)
        self.retriever.index(self.corpus)
        return self

    def run(self, query: str) -> PipelineResult:
        if not self.corpus:
            raise RuntimeError("Pipeline.run called before index(corpus)")
        if not query.strip():
            raise ValueError("query is empty")
        timings: list[StageTiming] = []
        with _timed(timings, "retrieve", {"candidates": 0}) as c:
            res = self.retriever.search([query], self.retrieve_k)
            cands = [self.corpus[int(i)] for i in res.indices[0] if i >= 0]
            c["candidates"] = len(cands)
        if self.reranker is not None and cands:
            with _timed(timings, "rerank", {"pairs": len(cands)}):
                cands = self.reranker.rank(query, cands).documents
        passages = cands[: self.context_k]
        with _timed(timings, "generate", {}) as c:
            messages = build_messages(query, passages, self.max_words_per_passage)
            gen = self.llm.generate(messages, max_new_tokens=self.max_new_tokens)
            c.update(prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                     prefill_s=round(gen.prefill_s, 4), decode_s=round(gen.decode_s, 4))
        return PipelineResult(query, gen.text, passages, parse_citations(gen.text, passages), timings, gen)
