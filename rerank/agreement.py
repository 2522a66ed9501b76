"""Rank agreement between a fast scorer and its fp32 reference: Spearman, Kendall, top-k overlap.

Failure mode VIII (Reranker on the Request Path). A faster backend (bf16, int8, truncation) is
only a fix if it ranks the candidates as the reference does; absolute score differences do not
matter to a reranker, order does. This is the check every fast variant passes in the unit tests
and reports in ``ragfix bench rerank``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["RankAgreement", "rank_agreement"]


class RankAgreement(NamedTuple):
    spearman: float
    kendall: float
    topk_overlap: float  # |top-k(ref) ∩ top-k(other)| / k
    max_abs_diff: float


def rank_agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> RankAgreement:
    """Compare two score vectors over the same candidates (higher = more relevant)."""
    from scipy.stats import kendalltau, spearmanr

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"reference and other must be 1-D of equal length, got {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError("need at least 2 candidates to compare rankings")
    k = min(k, a.size)
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return RankAgreement(float(spearmanr(a, b).statistic), float(kendalltau(a, b).statistic),
                         len(top_a & top_b) / k, float(np.max(np.abs(a - b))))
