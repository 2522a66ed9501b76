"""Length-aware batching, truncation policy, rank agreement, adaptive candidate count: numpy oracles."""
from __future__ import annotations

import numpy as np
import pytest

from rerank.agreement import rank_agreement
from rerank.batching import padded_tokens, plan_batches
from rerank.candidates import AdaptiveCandidateCount
from rerank.truncation import TruncationPolicy


def test_plan_covers_every_index_once_and_respects_budget():
    rng = np.random.default_rng(0)
    lens = rng.integers(5, 300, size=257)
    batches = plan_batches(lens, max_tokens=2048, max_batch=40)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lens)))
    for b in batches:
        assert len(b) <= 40
        assert len(b) == 1 or len(b) * lens[b].max() <= 2048


def test_plan_wastes_less_padding_than_fixed_batches_in_input_order():
    rng = np.random.default_rng(1)
    lens = np.concatenate([rng.integers(10, 30, 90), rng.integers(400, 512, 10)])
    rng.shuffle(lens)
    fixed = [np.arange(i, min(i + 32, len(lens))) for i in range(0, len(lens), 32)]
    planned = plan_batches(lens, max_tokens=32 * 64)
    assert padded_tokens(lens, planned) < 0.5 * padded_tokens(lens, fixed)
    assert padded_tokens(lens, planned) >= lens.sum()


def test_plan_oversized_pair_gets_its_own_batch_and_bad_input_raises():
    assert [b.tolist() for b in plan_batches([10, 5000, 10], max_tokens=100)] == [[0, 2], [1]]
    with pytest.raises(ValueError, match="max_tokens"):
        plan_batches([1, 2], max_tokens=0)
    with pytest.raises(ValueError, match=">= 1 token"):
        plan_batches([0, 2], max_tokens=10)


def test_truncation_policy_validates():
    with pytest.raises(ValueError, match="max_doc_tokens"):
        TruncationPolicy(128, max_doc_tokens=0)
    assert TruncationPolicy(128).query_cap == 64


def test_rank_agreement_against_hand_values():
    a = np.array([3.0, 2.0, 1.0, 0.0])
    assert rank_agreement(a, a * 10 + 1, k=2) == (1.0, 1.0, 1.0, pytest.approx(28.0))  # max |9a + 1|
    r = rank_agreement(a, -a, k=2)
    assert r.spearman == pytest.approx(-1.0) and r.kendall == pytest.approx(-1.0) and r.topk_overlap == 0.0
    with pytest.raises(ValueError, match="equal length"):
        rank_agreement(a, a[:3])


def test_adaptive_count_select_and_fit():
    cc = AdaptiveCandidateCount(ratio=0.6, min_k=2, max_k=3)
    assert cc.select(np.array([10.0, 9.0, 5.0, 1.0])) == 2
    assert cc.select(np.array([10.0, 9.9, 9.8, 9.7])) == 3  # capped at max_k
    assert cc.select(np.array([-1.0, -2.0, -3.0])) == 3  # non-positive top: no ratio, max_k
    # Relevant docs always within the first 3 of lists whose scores drop sharply after position 3.
    scores = [np.array([10, 9.5, 9, 2, 1.5, 1, 0.5, 0.4]) * s for s in (1.0, 2.0, 3.0)]
    masks = [np.array([1, 0, 1, 0, 0, 0, 0, 0], bool), np.array([0, 1, 0, 0, 0, 0, 0, 0], bool),
             np.array([0, 0, 1, 0, 0, 0, 0, 0], bool)]
    fit = AdaptiveCandidateCount(min_k=1, max_k=8).fit(scores, masks, target=1.0)
    assert fit.kept_share_ == 1.0
    assert fit.mean_k_ == 3.0  # cuts the tail, keeps every relevant doc
    assert 0.2 < fit.ratio <= 0.9
    with pytest.raises(ValueError, match="ratio"):
        AdaptiveCandidateCount(ratio=1.5)
