"""Fast paths against obvious versions: RRF vs a dict-based oracle, faiss vs numpy, cache round trip."""
import numpy as np
import pytest

from retrieval import BM25Retriever, DenseIndex, Document, EmbeddingCache, SearchResults, reciprocal_rank_fusion


def test_rrf_matches_oracle():
    rng = np.random.default_rng(0)
    a = SearchResults(np.array([rng.permutation(50)[:20] for _ in range(4)]), np.zeros((4, 20), np.float32))
    b = SearchResults(np.array([rng.permutation(50)[:20] for _ in range(4)]), np.zeros((4, 20), np.float32))
    fused = reciprocal_rank_fusion([a, b], k=60, top_k=10)
    for q in range(4):
        s = {}
        for r in (a, b):
            for rank, d in enumerate(r.indices[q], 1):
                s[int(d)] = s.get(int(d), 0) + 1 / (60 + rank)
        expect = [d for d, _ in sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]
        assert fused.indices[q].tolist() == expect


def test_dense_index_matches_numpy_and_factory_strings():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:5] + 0.01
    res = DenseIndex(32).add(x).search(q, 7)
    expect = np.argsort(-(q @ x.T), axis=1)[:, :7]
    assert (res.indices == expect).all()
    hnsw = DenseIndex(32, "HNSW32").add(x).search(q, 1)
    assert (hnsw.indices[:, 0] == expect[:, 0]).all()
    with pytest.raises(ValueError, match="faiss could not build index"):
        DenseIndex(32, "NotAnIndex")
    with pytest.raises(ValueError, match="NaN"):
        DenseIndex(2).add(np.array([[np.nan, 1.0]], np.float32))


def test_bm25_ranks_the_matching_document_first():
    docs = [Document("a", "the mitochondria is the powerhouse of the cell"), Document("b", "stock markets fell sharply"),
            Document("c", "cells divide by mitosis")]
    r = BM25Retriever().index(docs).search(["powerhouse of cells", "markets"], 3)
    assert r.indices[0, 0] == 0 and r.indices[1, 0] == 1
    assert r.indices[1, 1] == -1  # nothing else matches "markets": no padding with random docs
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Retriever().index([])


def test_embedding_cache_round_trip_and_key(tmp_path):
    calls = []

    def enc(texts):
        calls.append(len(texts))
        return np.ones((len(texts), 4), np.float32)

    cache = EmbeddingCache(tmp_path)
    a = cache.get_or_compute("fp", ["1", "2"], ["x", "y"], enc)
    b = cache.get_or_compute("fp", ["1", "2"], ["x", "y"], enc)
    assert calls == [2] and (a == b).all()
    cache.get_or_compute("fp", ["1", "2"], ["x", "CHANGED"], enc)
    cache.get_or_compute("fp2", ["1", "2"], ["x", "y"], enc)
    assert calls == [2, 2, 2]
    assert not list(tmp_path.glob("*.tmp"))
