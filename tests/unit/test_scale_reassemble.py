"""scale.reassemble: distributed output back in input order, exactly once or an error (no Ray needed)."""
from __future__ import annotations

import numpy as np
import pytest

from retrieval.cache import EmbeddingCache
from scale import RayOptions, reassemble


def test_shuffled_batches_come_back_in_order():
    out = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    perm = np.random.default_rng(0).permutation(10)
    np.testing.assert_array_equal(reassemble(10, perm, out[perm]), out)


@pytest.mark.parametrize("idx, what", [([0, 1, 2, 2], "1 repeated"), ([0, 1, 3], "1 of 4 rows missing"),
                                       ([0, 1, 2, 7], "outside")])
def test_lost_doubled_or_foreign_rows_raise(idx, what):
    with pytest.raises(RuntimeError, match=what):
        reassemble(4, np.array(idx), np.zeros((len(idx), 2)))


def test_options_refuse_nonsense():
    with pytest.raises(ValueError, match="workers"):
        RayOptions(workers=0)
    with pytest.raises(ValueError, match="max_restarts"):
        RayOptions(max_restarts=-1)


def test_cache_refresh_recomputes(tmp_path):
    cache = EmbeddingCache(tmp_path)
    calls = []

    def enc(texts):
        calls.append(len(texts))
        return np.full((len(texts), 2), len(calls), dtype=np.float32)

    a = cache.get_or_compute("fp", ["1"], ["t"], enc)
    b = cache.get_or_compute("fp", ["1"], ["t"], enc)
    c = cache.get_or_compute("fp", ["1"], ["t"], enc, refresh=True)
    assert calls == [1, 1] and a[0, 0] == b[0, 0] == 1 and c[0, 0] == 2
