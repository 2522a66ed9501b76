"""Adaptive candidate count: how many first-stage candidates to rerank, per query, from their scores.

Failure mode VIII (Reranker on the Request Path). A fixed K = 100 spends the reranker on the long
tail even for queries whose first-stage scores fall off a cliff after a handful of documents. The
fix reads the first-stage score distribution: candidates scoring below ``ratio x`` the top score
are dropped (BM25 and cosine scores are both "more is better" and, within one query, on one scale),
with ``min_k`` and ``max_k`` as floors and caps. ``fit`` chooses the largest ``ratio`` that still
keeps a target share of the relevant documents the full K held, on labelled queries (a training
split, never the test queries). Measured by ``ragfix bench rerank`` (variant ``adaptive``).

:class:`AdaptiveReranker` puts the count in front of a ranker: it reranks the first ``k``
candidates and keeps the first stage's order below them (the ``fastest`` preset,
:mod:`rerank.presets`).

Left out: learned per-query predictors (query-performance prediction); the rule here is one
number, fitted and inspected.

Example:
    >>> AdaptiveCandidateCount(ratio=0.6, min_k=2).select(np.array([10.0, 9.0, 5.0, 1.0]))
    2
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rerank.cross_encoder import RankedResults
from retrieval.types import Document

__all__ = ["AdaptiveCandidateCount", "AdaptiveReranker"]


class AdaptiveCandidateCount:
    """``k = clip(#{score >= ratio * top}, min_k, max_k)`` per query.

    Args:
        ratio: share of the top first-stage score a candidate needs (0 keeps all).
        min_k: never fewer (the context and the top-10 metric need this many).
        max_k: never more.
    """

    def __init__(self, ratio: float = 0.5, min_k: int = 10, max_k: int = 100) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"AdaptiveCandidateCount: ratio must be in [0, 1], got {ratio}")
        if min_k < 1 or max_k < min_k:
            raise ValueError(f"AdaptiveCandidateCount: need 1 <= min_k <= max_k, got min_k={min_k}, max_k={max_k}")
        self.ratio, self.min_k, self.max_k = float(ratio), int(min_k), int(max_k)

    def select(self, scores: np.ndarray) -> int:
        """Candidates to keep for one query; ``scores`` in first-stage order (descending)."""
        s = np.asarray(scores, dtype=np.float64)
        s = s[np.isfinite(s)]
        if s.size == 0:
            return 0
        top = float(s.max())
        # subtle: a ratio is only meaningful on positive scores; a non-positive top (e.g. cosine of
        # unrelated texts) says nothing about the tail, so keep max_k.
        n = int(np.sum(s >= self.ratio * top)) if top > 0 else s.size
        return int(min(s.size, max(self.min_k, min(self.max_k, n))))

    def fit(self, score_lists: Sequence[np.ndarray], relevant_masks: Sequence[np.ndarray],
            target: float = 0.98, grid: Sequence[float] | None = None) -> "AdaptiveCandidateCount":
        """Largest ``ratio`` keeping ``target`` of the relevant candidates that the full lists held.

        Args:
            score_lists: first-stage scores per query, descending.
            relevant_masks: per query, a bool array over the same candidates (True = judged relevant).
            target: share of those relevant candidates that must survive.
        Sets ``ratio`` and ``kept_share_`` (the share kept on the fitting queries), ``mean_k_``.
        """
        if len(score_lists) != len(relevant_masks) or not score_lists:
            raise ValueError(f"fit needs equal, non-empty lists, got {len(score_lists)} score lists and {len(relevant_masks)} masks")
        if not 0.0 < target <= 1.0:
            raise ValueError(f"target must be in (0, 1], got {target}")
        grid = np.linspace(0.0, 0.95, 20) if grid is None else np.asarray(grid, dtype=np.float64)
        total = sum(int(np.sum(m)) for m in relevant_masks)
        if total == 0:
            raise ValueError("no relevant candidates in relevant_masks: nothing to fit the ratio on")
        best = 0.0
        best_share, best_k = 1.0, float(np.mean([len(s) for s in score_lists]))
        for r in sorted(grid):
            probe = AdaptiveCandidateCount(float(r), self.min_k, self.max_k)
            ks = [probe.select(s) for s in score_lists]
            kept = sum(int(np.sum(np.asarray(m)[:k])) for m, k in zip(relevant_masks, ks))
            share = kept / total
            if share >= target:
                best, best_share, best_k = float(r), share, float(np.mean(ks))
        self.ratio = best
        self.kept_share_ = best_share
        self.mean_k_ = best_k
        return self


class AdaptiveReranker:
    """``AdaptiveReranker(ranker, count).rank(query, docs, first_stage_scores, top_k=None)``.

    The first ``k = count.select(first_stage_scores)`` candidates (``docs`` in first-stage order)
    are ordered by ``ranker.score_pairs`` (logits); the rest follow in first-stage order with score
    ``-inf`` (never scored). ``pairs_scored_`` counts the pairs sent to the ranker.

    Args:
        ranker: any scorer with ``score_pairs`` (a :class:`rerank.RerankEngine`, a cascade's ranker...).
        count: a fitted :class:`AdaptiveCandidateCount` (fit it on a training split, never the test queries).
    """

    def __init__(self, ranker: Any, count: AdaptiveCandidateCount, name: str = "adaptive") -> None:
        if not hasattr(ranker, "score_pairs"):
            raise TypeError(f"AdaptiveReranker: ranker must have score_pairs, got {type(ranker).__name__}")
        if not isinstance(count, AdaptiveCandidateCount):
            raise TypeError(f"AdaptiveReranker: count must be an AdaptiveCandidateCount, got {type(count).__name__}")
        self.ranker, self.count, self.name = ranker, count, name
        self.pairs_scored_ = 0

    def rank(self, query: str, docs: Sequence[Document], first_stage_scores: np.ndarray,
             top_k: int | None = None) -> RankedResults:
        fs = np.asarray(first_stage_scores, dtype=np.float64)
        if fs.shape != (len(docs),):
            raise ValueError(f"AdaptiveReranker: first_stage_scores has shape {fs.shape}, expected ({len(docs)},): "
                             "one first-stage score per document, in first-stage order")
        k = self.count.select(fs)
        head = np.asarray(self.ranker.score_pairs([(query, d.full_text()) for d in docs[:k]]), dtype=np.float32) \
            if k else np.zeros(0, dtype=np.float32)
        self.pairs_scored_ += k
        top = np.argsort(-head, kind="stable")
        order = np.concatenate([top, np.arange(k, len(docs))]).astype(np.int64)
        scores = np.concatenate([head[top], np.full(len(docs) - k, -np.inf, dtype=np.float32)]).astype(np.float32)
        n = top_k if top_k is not None else len(docs)
        return RankedResults([docs[i] for i in order[:n]], scores[:n], order[:n])
