"""Pipeline.run(on_token=, max_new_tokens=): deltas reach the caller from a streaming backend, a non-streaming
backend's answer arrives in one piece, a raise from on_token stops the request, and the per-request cap is passed on."""
from __future__ import annotations

import pytest

from generate.backends import Generation
from pipeline import Pipeline
from retrieval.retrievers import BM25Retriever
from retrieval.types import Document

DOCS = [Document("a", "Scurvy is caused by a lack of vitamin C.", "Scurvy"), Document("b", "Rickets comes from a lack of vitamin D.", "Rickets")]


class _Words:
    """A backend that answers with fixed words (the LLM is not what is tested here: the pipeline's plumbing is)."""

    name = "words"

    def __init__(self, streams: bool) -> None:
        self.calls: list[int] = []
        if not streams:
            self.generate = self._plain  # type: ignore[method-assign]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, max_new_tokens: int = 64, on_token=None) -> Generation:
        self.calls.append(max_new_tokens)
        words = ["Vitamin", " C", " [1]."][:max_new_tokens]
        for w in words:
            if on_token is not None:
                on_token(w)
        return Generation("".join(words), 10, len(words), 0.01, 0.01, self.name)

    def _plain(self, messages, max_new_tokens: int = 64) -> Generation:
        self.calls.append(max_new_tokens)
        return Generation("Vitamin C [1].", 10, 3, 0.01, 0.0, self.name)


def _pipe(llm) -> Pipeline:
    return Pipeline(BM25Retriever(), llm, retrieve_k=2, context_k=1, max_new_tokens=16).index(DOCS)


def test_streaming_backend_deltas_and_cap():
    llm, got = _Words(streams=True), []
    r = _pipe(llm).run("what causes scurvy", on_token=got.append, max_new_tokens=2)
    assert got == ["Vitamin", " C"] and r.answer == "Vitamin C" and llm.calls == [2]
    _pipe(llm).run("what causes scurvy")
    assert llm.calls[-1] == 16  # the pipeline's cap when the request gives none


def test_non_streaming_backend_answers_in_one_piece():
    llm, got = _Words(streams=False), []
    r = _pipe(llm).run("what causes scurvy", on_token=got.append)
    assert got == ["Vitamin C [1]."] and r.cited_ids == ["a"]


def test_raise_from_on_token_stops_the_request():
    class Stop(Exception):
        pass

    def stop(_delta: str) -> None:
        raise Stop

    with pytest.raises(Stop):
        _pipe(_Words(streams=True)).run("what causes scurvy", on_token=stop)
    with pytest.raises(ValueError, match="max_new_tokens"):
        _pipe(_Words(streams=True)).run("what causes scurvy", max_new_tokens=0)
