"""rerank.fusion against a naive per-document RRF, and its ablation switches."""
from __future__ import annotations

import numpy as np
import pytest

from rerank.fusion import fuse_ranks, rank_positions, rrf_scores


def _naive(signals, weights, k):
    n = len(next(iter(signals.values())))
    out = np.zeros(n)
    for name, s in signals.items():
        for i in range(n):
            rank = 1 + sum(1 for j in range(n) if s[j] > s[i] or (s[j] == s[i] and j < i))
            out[i] += weights.get(name, 1.0) / (k + rank)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_rrf_matches_naive_oracle(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    signals = {s: np.round(rng.normal(size=n), 1) for s in ("ce", "bm25", "dense")}  # rounding makes ties
    weights = {"ce": float(rng.uniform(0, 2)), "bm25": float(rng.uniform(0, 2))}
    np.testing.assert_allclose(rrf_scores(signals, weights, k=60), _naive(signals, weights, 60), rtol=1e-12)


def test_zero_weight_removes_a_signal():
    sig = {"ce": np.array([3.0, 2.0, 1.0]), "bm25": np.array([1.0, 2.0, 3.0])}
    assert fuse_ranks(sig, {"bm25": 0.0}).tolist() == [0, 1, 2]
    assert fuse_ranks(sig, {"ce": 0.0}).tolist() == [2, 1, 0]


def test_missing_documents_rank_last():
    ranks = rank_positions(np.array([np.nan, 1.0, -np.inf, 2.0]))
    assert ranks[3] == 1 and ranks[1] == 2 and set(ranks[[0, 2]]) == {3, 4}
    fused = rrf_scores({"dense": np.array([-np.inf, 0.5, 0.4])})
    assert fused.argmin() == 0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same candidates"):
        rrf_scores({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="unknown signals"):
        rrf_scores({"a": np.zeros(3)}, {"ce": 1.0})
    with pytest.raises(ValueError, match="at least one signal"):
        rrf_scores({})
    with pytest.raises(ValueError, match="1-D"):
        rank_positions(np.zeros((2, 2)))


def test_zsum_keeps_score_gaps_that_ranks_lose():
    from rerank.fusion import zsum_scores

    # bm25 and dense barely prefer 0 over 1; ce strongly prefers 1: RRF picks 0, z-score fusion follows the large gap
    sig = {"bm25": np.array([10.0, 9.9, 0.0]), "dense": np.array([0.5, 0.49, 0.0]), "ce": np.array([0.2, 5.0, 0.1])}
    assert int(np.argmax(zsum_scores(sig))) == 1
    assert int(np.argmax(rrf_scores(sig))) == 0
    # not retrieved (-inf / NaN) sits below every retrieved candidate of that signal; a constant signal adds nothing
    z = zsum_scores({"dense": np.array([-np.inf, 0.5, 0.4]), "flat": np.array([1.0, 1.0, 1.0])})
    assert z[0] < z[2] < z[1]
    np.testing.assert_allclose(zsum_scores(sig, {"ce": 0.0, "dense": 0.0}), zsum_scores({"bm25": sig["bm25"]}))
    with pytest.raises(ValueError, match="unknown signals"):
        zsum_scores(sig, {"splade": 1.0})
    with pytest.raises(ValueError, match="same candidates"):
        zsum_scores({"a": np.zeros(3), "b": np.zeros(2)})
