"""Pipeline(overlap_prefill="stream"): each context passage extends the prefilled prompt once its place is fixed,
in prompt order (a place reported early waits for the places above it), and generate continues from the last one."""
from __future__ import annotations

import threading

import pytest

from generate.backends import Generation, Prefix
from pipeline import Pipeline
from retrieval.retrievers import BM25Retriever
from retrieval.types import Document

DOCS = [Document(c, f"{c} vitamin text {c}") for c in "abcde"]


class _Recorder:
    """A backend that records what it is asked to prefill (the LLM is not under test: the overlap's plumbing is)."""

    name = "rec"

    def __init__(self) -> None:
        self.prefills: list[tuple[int, int | None]] = []  # (passages in the prompt, passages in the prefix it extends)
        self.generated_from: int | None = None
        self.lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    @staticmethod
    def _passages(messages) -> int:
        import re

        return len(re.findall(r"^\[\d+\] ", messages[-1]["content"], flags=re.M))

    def prompt_prefix(self, messages):
        return ("prefix", 0)

    def prompt_through_passages(self, messages):
        return ("through", self._passages(messages))

    def prefill(self, prompt, prefix=None):
        n = prompt[1]
        with self.lock:
            self.prefills.append((n, None if prefix is None else prefix.ids[1]))
        return Prefix(list(prompt), None, 0.0)

    def generate(self, messages, max_new_tokens: int = 64, prefix=None) -> Generation:
        self.generated_from = None if prefix is None else prefix.ids[1]
        return Generation("ok [1]", 10, 2, 0.0, 0.0, self.name)


class _Reverse:
    """A stage that fixes its places bottom-up (worst first), reporting each through on_fixed."""

    def __init__(self, report: bool) -> None:
        self.report = report

    def rank(self, query, docs, on_fixed=None):
        from rerank.cross_encoder import RankedResults
        import numpy as np

        order = np.arange(len(docs))
        if self.report and on_fixed is not None:
            for p in reversed(range(len(docs))):
                on_fixed(p, docs[p])
        return RankedResults([docs[i] for i in order], np.zeros(len(docs)), order)


def _run(stage, mode="stream") -> _Recorder:
    llm = _Recorder()
    pipe = Pipeline(BM25Retriever(), llm, stage, retrieve_k=5, context_k=3, overlap_prefill=mode).index(DOCS)
    try:
        r = pipe.run("vitamin text")
    finally:
        pipe.close()
    assert r.answer == "ok [1]"
    return llm


def test_stream_prefills_passages_in_prompt_order():
    llm = _run(_Reverse(True))
    # the [system + question] prefix, then 1, 2, 3 passages, each extending the one before
    assert llm.prefills == [(0, None), (1, 0), (2, 1), (3, 2)]
    assert llm.generated_from == 3


def test_places_fixed_only_at_return_are_left_to_generate():
    """A stage that reports nothing while it runs: one pass in generate beats one prefill per passage."""
    llm = _run(_Reverse(False))
    assert llm.prefills == [(0, None)] and llm.generated_from == 0


def test_prefix_only_overlap_prefills_no_passage():
    llm = _run(_Reverse(True), mode=True)
    assert llm.prefills == [(0, None)] and llm.generated_from == 0


def test_stream_needs_a_backend_that_cuts_after_the_passages():
    class NoCut:
        name = "nocut"

        def prefill(self, prompt, prefix=None):
            return Prefix([], None, 0.0)

    with pytest.raises(ValueError, match="prompt_through_passages"):
        Pipeline(BM25Retriever(), NoCut(), None, overlap_prefill="stream")
    with pytest.raises(ValueError, match="overlap_prefill must be"):
        Pipeline(BM25Retriever(), _Recorder(), None, overlap_prefill="yes")
