"""Hybrid fusion of several rankings by reciprocal-rank fusion (Cormack et al., SIGIR 2009).

RRF needs no score calibration between BM25 and dense similarities, which is why it is the
default: ``score(d) = sum_r w_r / (k + rank_r(d))`` with ranks from 1 and ``k = 60``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from retrieval.types import SearchResults

__all__ = ["reciprocal_rank_fusion"]


def reciprocal_rank_fusion(
    results: Sequence[SearchResults], k: int = 60, top_k: int = 100, weights: Sequence[float] | None = None
) -> SearchResults:
    """Fuse per-query rankings (same queries, same corpus indexing) into one top-``top_k`` ranking."""
    if not results:
        raise ValueError("reciprocal_rank_fusion needs at least one ranking")
    n_q = results[0].indices.shape[0]
    if any(r.indices.shape[0] != n_q for r in results):
        raise ValueError("all rankings must cover the same queries")
    weights = list(weights) if weights is not None else [1.0] * len(results)
    if len(weights) != len(results):
        raise ValueError(f"got {len(weights)} weights for {len(results)} rankings")
    out_idx = np.full((n_q, top_k), -1, dtype=np.int64)
    out_sc = np.zeros((n_q, top_k), dtype=np.float32)
    for q in range(n_q):
        fused: dict[int, float] = {}
        for w, r in zip(weights, results):
            for rank, doc in enumerate(r.indices[q], start=1):
                if doc >= 0:
                    fused[int(doc)] = fused.get(int(doc), 0.0) + w / (k + rank)
        # subtle: ties broken by document index so fusion is deterministic across runs.
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        for j, (doc, s) in enumerate(best):
            out_idx[q, j] = doc
            out_sc[q, j] = s
    return SearchResults(out_idx, out_sc)
