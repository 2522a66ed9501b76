"""Context-rot building blocks on real NQ-open rows: distractors never hold an answer; slots; intervals (VII)."""
import numpy as np
import pytest

from generate.audit import has_answer
from data.nq_open import load_nq_oracle
from generate.context_rot import bootstrap_ci, build_items, slots_for


def test_slots_and_bootstrap():
    assert slots_for(10, 10) == list(range(10))
    assert slots_for(5, 10) == [0, 2, 4, 7, 9] or slots_for(5, 10) == [0, 2, 5, 7, 9]
    assert slots_for(1, 10) == [0]
    with pytest.raises(ValueError):
        slots_for(11, 10)
    lo, hi = bootstrap_ci(np.r_[np.zeros(50), np.ones(50)])
    assert lo < 0.5 < hi and hi - lo < 0.3
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_hard_distractors_never_contain_an_answer():
    from registry import load_embedder

    rows = load_nq_oracle()[:150]
    items = build_items(rows, load_embedder("minilm"), n_passages=5, limit=20, seed=0)
    assert len(items) == 20
    for it in items:
        assert len(it.distractors) == 4 and it.gold not in it.distractors
        assert not any(has_answer(d, it.answers) for d in it.distractors)
        assert sorted(it.ranked) == list(range(5)) and it.ranked.index(0) == it.retrieval_rank
