"""First-stage retrievers over a list of :class:`Document`: BM25, dense, and hybrid (RRF).

All share ``index(docs) -> self`` and ``search(queries, k) -> SearchResults`` so benchmarks can swap
them by name, which is the first step of diagnosing an Embedding Plateau (VI).
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from retrieval.bm25 import BM25Index
from retrieval.cache import EmbeddingCache
from retrieval.dense import DenseIndex
from retrieval.embedders import Embedder
from retrieval.hybrid import reciprocal_rank_fusion
from retrieval.types import Document, HybridResults, SearchResults

__all__ = ["Retriever", "BM25Retriever", "DenseRetriever", "HybridRetriever"]


@runtime_checkable
class Retriever(Protocol):
    name: str

    def index(self, docs: Sequence[Document]) -> "Retriever": ...

    def search(self, queries: Sequence[str], k: int) -> SearchResults: ...


def _check_corpus(docs: Sequence[Document]) -> None:
    if len(docs) == 0:
        raise ValueError("empty corpus: index at least one document")


class BM25Retriever:
    name = "bm25"

    def __init__(self, **bm25_kwargs) -> None:
        self._bm25 = BM25Index(**bm25_kwargs)

    def index(self, docs: Sequence[Document]) -> "BM25Retriever":
        _check_corpus(docs)
        self._bm25.index([d.full_text() for d in docs])
        return self

    def search(self, queries: Sequence[str], k: int) -> SearchResults:
        return self._bm25.search(queries, k)


class DenseRetriever:
    """Embeds the corpus once (cached on disk by fingerprint and corpus hash) into a faiss index."""

    def __init__(self, embedder: Embedder, factory: str = "Flat", cache: EmbeddingCache | None = None) -> None:
        self.embedder = embedder
        self.name = embedder.name
        self.factory = factory
        self.cache = cache if cache is not None else EmbeddingCache()
        self._index: DenseIndex | None = None

    def index(self, docs: Sequence[Document]) -> "DenseRetriever":
        _check_corpus(docs)
        texts = [d.full_text() for d in docs]
        emb = self.cache.get_or_compute(self.embedder.fingerprint, [d.id for d in docs], texts, self.embedder.encode_documents)
        self._index = DenseIndex(emb.shape[1], self.factory).add(emb)
        return self

    def search(self, queries: Sequence[str], k: int) -> SearchResults:
        if self._index is None:
            raise RuntimeError(f"{self.name}: search called before index(docs)")
        return self._index.search(self.embedder.encode_queries(list(queries)), k)


class HybridRetriever:
    """Reciprocal-rank fusion of several retrievers, each asked for ``depth`` candidates.

    Args:
        retrievers: the components (e.g. BM25 and dense).
        rrf_k: the RRF constant (60, as Cormack et al.).
        depth: candidates asked of each component; a candidate outside a component's top ``depth``
            has no score from it.
        names: one name per component for :meth:`search_with_signals` (default: each retriever's
            ``name``); names must be distinct.

    :meth:`search` returns the fused ranking; :meth:`search_with_signals` the same ranking plus
    each component's own score per candidate, which the rerank stage
    (:class:`rerank.stage.FusedRerankStage`) fuses with the cross-encoder's logit.
    """

    def __init__(self, retrievers: Sequence[Retriever], rrf_k: int = 60, depth: int = 1000, name: str = "hybrid",
                 names: Sequence[str] | None = None) -> None:
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.retrievers = list(retrievers)
        self.rrf_k = rrf_k
        self.depth = depth
        self.name = name
        signal_names = list(names) if names is not None else [str(getattr(r, "name", type(r).__name__)) for r in self.retrievers]
        if len(signal_names) != len(self.retrievers):
            raise ValueError(f"HybridRetriever: got {len(signal_names)} names for {len(self.retrievers)} retrievers")
        if len(set(signal_names)) != len(signal_names):
            raise ValueError(f"HybridRetriever: component names must be distinct, got {signal_names}; pass names=(...)")
        self.names = signal_names

    def index(self, docs: Sequence[Document]) -> "HybridRetriever":
        for r in self.retrievers:
            r.index(docs)
        return self

    def search(self, queries: Sequence[str], k: int) -> SearchResults:
        runs = [r.search(queries, max(k, self.depth)) for r in self.retrievers]
        return reciprocal_rank_fusion(runs, k=self.rrf_k, top_k=k)

    def search_with_signals(self, queries: Sequence[str], k: int) -> HybridResults:
        """:meth:`search` plus each component's score for every fused candidate (``-inf``: not retrieved)."""
        runs = [r.search(queries, max(k, self.depth)) for r in self.retrievers]
        fused = reciprocal_rank_fusion(runs, k=self.rrf_k, top_k=k)
        signals: dict[str, np.ndarray] = {}
        for name, run in zip(self.names, runs):
            out = np.full(fused.indices.shape, -np.inf, dtype=np.float64)
            for q in range(fused.indices.shape[0]):
                own = {int(j): float(s) for j, s in zip(run.indices[q], run.scores[q]) if j >= 0}
                for c, j in enumerate(fused.indices[q]):
                    if j >= 0 and int(j) in own:
                        out[q, c] = own[int(j)]
            signals[name] = out
        return HybridResults(fused.indices, fused.scores, signals)
