"""rerank.precomputed: the index-time document side (keyed by embedder fingerprint, bad input refused), the
pruner's request-side scores, and ``best``'s order (kept by the pruner, ordered by the model, the rest after)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from rerank.precomputed import DocVectorIndex, PrecomputedPruner, PrunedRerank, keep_count
from retrieval.types import Document

DOCS = [Document(f"d{i}", t) for i, t in enumerate([
    "scurvy vitamin c deficiency in sailors", "rickets vitamin d sunlight", "citrus fruit lemons limes",
    "collagen synthesis needs vitamin c", "navy voyages long at sea", "bone density calcium"])]


class _HashEmbedder:
    """A deterministic bag-of-words embedder (the embedder is not under test: the index and pruner are)."""

    dim = 16

    def __init__(self, salt: str = "a") -> None:
        self.fingerprint = hashlib.sha256(salt.encode()).hexdigest()[:16]
        self.salt = salt
        self.encoded = 0

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in text.lower().split():
            v[int(hashlib.md5((self.salt + w).encode()).hexdigest(), 16) % self.dim] += 1.0
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def encode_queries(self, texts):
        return np.stack([self._vec(t) for t in texts])

    def encode_documents(self, texts):
        self.encoded += len(texts)
        return np.stack([self._vec(t) for t in texts])


class _Overlap:
    """A pair scorer: words shared by query and document (stands in for the cross-encoder)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def score_pairs(self, pairs):
        self.seen.append(len(pairs))
        return np.array([len(set(q.split()) & set(d.split())) + 0.01 * len(d) for q, d in pairs], dtype=np.float32)


def test_index_is_keyed_by_fingerprint_and_reused(tmp_path):
    a = _HashEmbedder("a")
    first = DocVectorIndex.build(a, DOCS, cache_dir=tmp_path)
    assert not first.from_cache and a.encoded == len(DOCS) and first.fingerprint == a.fingerprint
    again = DocVectorIndex.build(a, DOCS, cache_dir=tmp_path)
    assert again.from_cache and a.encoded == len(DOCS)  # loaded, not encoded
    np.testing.assert_array_equal(again.vectors, first.vectors)
    b = _HashEmbedder("b")  # other weights: another key, so encoded again
    other = DocVectorIndex.build(b, DOCS, cache_dir=tmp_path)
    assert not other.from_cache and b.encoded == len(DOCS) and other.fingerprint != first.fingerprint
    assert DocVectorIndex.build(a, DOCS, cache_dir=tmp_path, refresh=True).from_cache is False  # a measured build
    assert first.bytes_per_doc == 16 * 2  # float16


def test_pruner_refuses_an_index_of_another_embedder(tmp_path):
    index = DocVectorIndex.build(_HashEmbedder("a"), DOCS, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fingerprint"):
        PrecomputedPruner(_HashEmbedder("b"), index)


def test_bad_index_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="one row per id"):
        DocVectorIndex("fp", ["a", "b"], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="not finite"):
        DocVectorIndex("fp", ["a"], np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="duplicate"):
        DocVectorIndex("fp", ["a", "a"], np.zeros((2, 4)))
    with pytest.raises(ValueError, match="no documents"):
        DocVectorIndex.build(_HashEmbedder(), [], cache_dir=tmp_path)
    index = DocVectorIndex.build(_HashEmbedder(), DOCS, cache_dir=tmp_path)
    with pytest.raises(KeyError, match="'zz' is not in the index"):
        index.vectors_for(["d0", "zz"])
    pruner = PrecomputedPruner(_HashEmbedder(), index)
    with pytest.raises(ValueError, match="one first-stage score per candidate"):
        pruner.score("scurvy", DOCS, np.ones(len(DOCS) - 1))


def test_pruner_scores_are_cosine_fused_with_first_stage(tmp_path):
    emb = _HashEmbedder()
    pruner = PrecomputedPruner(emb, DocVectorIndex.build(emb, DOCS, cache_dir=tmp_path))
    score, cos = pruner.score("vitamin c scurvy", DOCS, np.zeros(len(DOCS)))  # a constant first stage adds nothing
    expected = np.array([emb._vec(d.text) @ emb._vec("vitamin c scurvy") for d in DOCS])
    np.testing.assert_allclose(cos, expected, atol=2e-3)  # float16 storage
    assert int(np.argmax(score)) == int(np.argmax(cos)) == 0


@pytest.mark.parametrize("final", ["ce", "fused"])
def test_best_order_keeps_pruned_top_scored_by_model_then_the_rest(tmp_path, final):
    emb = _HashEmbedder()
    pruner = PrecomputedPruner(emb, DocVectorIndex.build(emb, DOCS, cache_dir=tmp_path))
    ranker = _Overlap()
    best = PrunedRerank(pruner, ranker, keep=3, final=final)
    fs = np.array([5.0, 1.0, 0.5, 4.0, 0.2, 0.1])
    r = best.rank("vitamin c scurvy", DOCS, fs)
    prune, _ = pruner.score("vitamin c scurvy", DOCS, fs)
    by_pruner = list(np.argsort(-prune, kind="stable"))
    assert ranker.seen == [3] and best.pairs_scored_ == 3 and r.kept == 3
    assert sorted(r.order[:3].tolist()) == sorted(by_pruner[:3])  # the kept set is the pruner's top 3
    assert r.order[3:].tolist() == by_pruner[3:]  # the rest stay in the pruner's order
    if final == "ce":
        ce = ranker.score_pairs([("vitamin c scurvy", DOCS[i].text) for i in r.order[:3]])
        assert list(ce) == sorted(ce, reverse=True)
    assert sorted(r.order.tolist()) == list(range(len(DOCS)))


def test_best_takes_a_pipeline_signals_mapping(tmp_path):
    emb = _HashEmbedder()
    best = PrunedRerank(PrecomputedPruner(emb, DocVectorIndex.build(emb, DOCS, cache_dir=tmp_path)), _Overlap(), keep=2)
    fs = np.arange(len(DOCS), dtype=float)
    a = best.rank("vitamin", DOCS, {"bm25": fs, "dense": -fs}).order
    b = best.rank("vitamin", DOCS, fs).order
    assert a.tolist() == b.tolist()
    with pytest.raises(ValueError, match="no 'bm25'"):
        best.rank("vitamin", DOCS, {"x": fs, "y": fs})


def test_best_bad_arguments(tmp_path):
    emb = _HashEmbedder()
    pruner = PrecomputedPruner(emb, DocVectorIndex.build(emb, DOCS, cache_dir=tmp_path))
    with pytest.raises(ValueError, match="keep"):
        PrunedRerank(pruner, _Overlap(), keep=0)
    with pytest.raises(ValueError, match="final"):
        PrunedRerank(pruner, _Overlap(), final="rrf")
    with pytest.raises(TypeError, match="score_pairs"):
        PrunedRerank(pruner, object())
    with pytest.raises(TypeError, match="PrecomputedPruner"):
        PrunedRerank(object(), _Overlap())


def test_keep_count_per_query_from_the_pruner_distribution():
    head = np.array([9.0, 1.0, 1.1, 0.9, 1.0, 1.2, 0.8, 1.0, 1.1, 0.9])  # one clear winner
    flat = np.linspace(1.0, 1.1, 10)
    assert keep_count(head, 6) == 6  # no gap: the fixed keep
    assert keep_count(head, 6, gap=1.0, min_keep=2) == 2  # a clear head passes few (clipped to min_keep)
    assert keep_count(flat, 6, gap=1.0, min_keep=2) == 3  # z-scores of an even spread: 3 within 1 sd of the top
    assert keep_count(flat, 6, gap=3.5, min_keep=2) == 6  # a wide gap passes up to keep
    assert keep_count(np.ones(4), 6, gap=1.0, min_keep=2) == 4  # constant scores: all, capped by the list


def test_best_with_gap_scores_the_per_query_count(tmp_path):
    emb = _HashEmbedder()
    pruner = PrecomputedPruner(emb, DocVectorIndex.build(emb, DOCS, cache_dir=tmp_path))
    ranker = _Overlap()
    best = PrunedRerank(pruner, ranker, keep=5, gap=0.5, min_keep=2)
    fs = np.array([50.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    r = best.rank("vitamin c scurvy", DOCS, fs)
    prune, _ = pruner.score("vitamin c scurvy", DOCS, fs)
    assert r.kept == keep_count(prune, 5, 0.5, 2) == ranker.seen[0] and 2 <= r.kept <= 5
    with pytest.raises(ValueError, match="gap"):
        PrunedRerank(pruner, ranker, gap=0.0)
