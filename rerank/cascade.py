"""Cascade rerank: a small cross-encoder prunes K candidates to n, the large one ranks the n.

Failure mode VIII (Reranker on the Request Path). Swapping the 6-layer reranker for a 2-layer
one "collapses accuracy faster than latency moves"; but the small model is good enough to say
which candidates are certainly *not* in the top 10. So it scores all K (cheaply) and the large
model scores only the n it keeps: cost ~ K x small + n x large instead of K x large, with the
large model's ordering at the top. Measured by ``ragfix bench rerank`` (variant ``cascade``:
latency and nDCG@10 beside the full 6-layer rerank).

The returned ranking is the n survivors ordered by the large model, then the pruned candidates
in the small model's order; scores of pruned candidates are ``-inf`` (they were never scored by
the model whose scores the top holds). Left out: learned per-query ``n`` (see
:mod:`rerank.candidates` for the per-query candidate count from first-stage scores).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rerank.cross_encoder import RankedResults
from retrieval.types import Document

__all__ = ["CascadeReranker"]


class CascadeReranker:
    """``CascadeReranker(pruner, ranker, keep=20).rank(query, docs, top_k=10)``.

    Args:
        pruner: any scorer with ``score_pairs`` (e.g. a :class:`rerank.RerankEngine` over the 2-layer model).
        ranker: the scorer whose order the top must have (the 6-layer model).
        keep: candidates passed from pruner to ranker (``n``); all are ranked when ``len(docs) <= keep``.
    """

    def __init__(self, pruner: Any, ranker: Any, keep: int = 20, name: str = "cascade") -> None:
        if keep < 1:
            raise ValueError(f"CascadeReranker: keep must be >= 1, got {keep}")
        self.pruner, self.ranker, self.keep, self.name = pruner, ranker, int(keep), name
        self.pruned_pairs_ = 0
        self.ranked_pairs_ = 0

    @property
    def pairs_scored_(self) -> int:
        """Pairs scored by both models together (the pruner runs only when there are more than ``keep``)."""
        return self.pruned_pairs_ + self.ranked_pairs_

    def rank(self, query: str, docs: Sequence[Document], top_k: int | None = None) -> RankedResults:
        texts = [d.full_text() for d in docs]
        n = len(docs)
        if n <= self.keep:
            survivors = np.arange(n)
            rest = np.zeros(0, dtype=np.int64)
        else:
            small = self.pruner.score_pairs([(query, t) for t in texts])
            self.pruned_pairs_ += n
            by_small = np.argsort(-small, kind="stable")
            survivors, rest = by_small[: self.keep], by_small[self.keep:]
        big = self.ranker.score_pairs([(query, texts[i]) for i in survivors])
        self.ranked_pairs_ += len(survivors)
        top = survivors[np.argsort(-big, kind="stable")]
        order = np.concatenate([top, rest]).astype(np.int64)
        scores = np.concatenate([np.sort(big)[::-1], np.full(len(rest), -np.inf, dtype=np.float32)]).astype(np.float32)
        k = top_k if top_k is not None else n
        return RankedResults([docs[i] for i in order[:k]], scores[:k], order[:k])

    def score(self, query: str, doc: Document | str) -> float:
        """A single document is always within ``keep``: the ranker's score."""
        text = doc.full_text() if isinstance(doc, Document) else doc
        return float(self.ranker.score_pairs([(query, text)])[0])
