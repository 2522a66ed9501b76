"""rerank.stage (the fused rerank stage), the hybrid's per-candidate signals, and the Pipeline's default.

The z-score CombSUM is checked against a hand numpy computation written out here; the ranker is a
small real PairRanker (word overlap), since what is under test is the fusion and the wiring.
"""
from __future__ import annotations

import numpy as np
import pytest

from rerank.cross_encoder import PairRanker
from rerank.stage import FusedRerankStage, FusionRule
from retrieval.retrievers import BM25Retriever, HybridRetriever
from retrieval.types import Document


class Overlap(PairRanker):
    """Logit = shared words minus a length penalty: deterministic, cheap, order-sensitive."""

    def score_pairs(self, pairs):
        out = []
        for q, d in pairs:
            qw, dw = set(q.lower().split()), d.lower().split()
            out.append(len(qw & set(dw)) - 0.01 * len(dw))
        return np.asarray(out, dtype=np.float32)


def _hand_zsum(signals: dict, weights: dict) -> np.ndarray:
    total = None
    for name, s in signals.items():
        s = np.asarray(s, dtype=np.float64)
        ok = np.isfinite(s)
        vals = s[ok]
        mu = vals.sum() / len(vals)
        sd = np.sqrt(((vals - mu) ** 2).sum() / len(vals))  # population std, over the retrieved candidates
        z = np.where(ok, (s - mu) / sd, 0.0)
        z[~ok] = z[ok].min() - 1.0  # not retrieved: below the lowest retrieved
        total = weights.get(name, 1.0) * z if total is None else total + weights.get(name, 1.0) * z
    return total


@pytest.mark.parametrize("seed", range(10))
def test_fuse_is_the_hand_zscore_combsum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    ce = rng.normal(0, 3, n)
    bm25 = rng.gamma(2.0, 4.0, n)
    dense = rng.uniform(0.1, 0.9, n)
    bm25[rng.choice(n, n // 5, replace=False)] = -np.inf  # outside BM25's depth
    dense[rng.choice(n, n // 6, replace=False)] = -np.inf
    expected = _hand_zsum({"ce": ce, "bm25": bm25, "dense": dense}, {})
    got = FusedRerankStage(Overlap()).fuse(ce, {"bm25": bm25, "dense": dense})
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    weights = {"ce": 0.0, "dense": 2.0}
    got_w = FusedRerankStage(Overlap(), FusionRule("zsum", weights)).fuse(ce, {"bm25": bm25, "dense": dense})
    np.testing.assert_allclose(got_w, _hand_zsum({"ce": ce, "bm25": bm25, "dense": dense}, weights), rtol=1e-12, atol=1e-12)


def test_rank_scores_with_the_ranker_and_orders_by_the_fused_score():
    docs = [Document("a", "scurvy is caused by lack of vitamin c"), Document("b", "the stock market closed higher"),
            Document("c", "vitamin c deficiency and scurvy in sailors on long voyages at sea"),
            Document("d", "lime juice prevented scurvy"), Document("e", "paris is the capital of france")]
    q = "what causes scurvy vitamin"
    bm25 = np.array([9.0, 1.0, 7.5, 6.0, -np.inf])
    dense = np.array([0.8, 0.1, 0.7, 0.75, 0.05])
    stage = FusedRerankStage(Overlap())
    res = stage.rank(q, docs, {"bm25": bm25, "dense": dense})
    ce = Overlap().score_pairs([(q, d.full_text()) for d in docs])
    expected = np.argsort(-_hand_zsum({"ce": ce, "bm25": bm25, "dense": dense}, {}), kind="stable")
    assert res.order.tolist() == expected.tolist()
    assert [d.id for d in res.documents] == [docs[i].id for i in expected]
    np.testing.assert_allclose(res.signals["ce"], ce)
    assert np.all(np.diff(res.scores) <= 0)
    assert stage.rank(q, docs, {"bm25": bm25, "dense": dense}, top_k=2).order.tolist() == expected[:2].tolist()
    # the ce weight matters: without it the order is the first stage's fusion alone
    no_ce = FusedRerankStage(Overlap(), FusionRule("zsum", {"ce": 0.0})).rank(q, docs, {"bm25": bm25, "dense": dense})
    assert no_ce.order.tolist() == np.argsort(-_hand_zsum({"bm25": bm25, "dense": dense}, {}), kind="stable").tolist()


def test_rrf_rule_matches_rerank_fusion():
    from rerank.fusion import rrf_scores

    rng = np.random.default_rng(3)
    ce, bm25 = rng.normal(size=20), rng.normal(size=20)
    got = FusedRerankStage(Overlap(), FusionRule("rrf", {"bm25": 0.5}, rrf_k=10)).fuse(ce, {"bm25": bm25})
    np.testing.assert_allclose(got, rrf_scores({"ce": ce, "bm25": bm25}, {"bm25": 0.5}, k=10))


def test_bad_input_is_refused_with_the_parameter_named():
    stage = FusedRerankStage(Overlap())
    with pytest.raises(ValueError, match="'bm25' has shape"):
        stage.fuse(np.zeros(3), {"bm25": np.zeros(4)})
    with pytest.raises(ValueError, match="clashes"):
        stage.fuse(np.zeros(3), {"ce": np.zeros(3)})
    with pytest.raises(ValueError, match="unknown signals"):
        FusedRerankStage(Overlap(), FusionRule("zsum", {"dense": 0.0})).fuse(np.zeros(3), {"bm25": np.arange(3.0)})
    with pytest.raises(ValueError, match="method must be one of zsum, rrf"):
        FusionRule("combmnz")
    with pytest.raises(ValueError, match="weight of 'ce'"):
        FusionRule("zsum", {"ce": -1.0})
    with pytest.raises(TypeError, match="score_documents or score_pairs"):
        FusedRerankStage(object())


_CORPUS = [Document(str(i), t) for i, t in enumerate([
    "scurvy is caused by a lack of vitamin c", "sailors developed scurvy on long voyages",
    "the stock market closed higher on friday", "vitamin c deficiency impairs collagen synthesis",
    "photosynthesis converts light energy in plants", "lime juice prevented scurvy at sea",
    "the capital of france is paris", "rust forms when iron reacts with oxygen",
    "oranges and lemons cured scurvy in the 1747 trial", "graphics cards accelerate matrix multiplication"])]


def test_hybrid_signals_are_each_components_own_scores():
    a, b = BM25Retriever(), BM25Retriever(k1=1.5, b=0.9)
    hyb = HybridRetriever([a, b], depth=3, names=("a", "b")).index(_CORPUS)
    qs = ["scurvy vitamin", "paris france"]
    res = hyb.search_with_signals(qs, 5)
    plain = hyb.search(qs, 5)
    np.testing.assert_array_equal(res.indices, plain.indices)
    np.testing.assert_array_equal(res.scores, plain.scores)
    for name, r in (("a", a), ("b", b)):
        own = r.search(qs, max(5, hyb.depth))  # each component as the hybrid asks it
        for qi in range(len(qs)):
            by_doc = {int(j): float(s) for j, s in zip(own.indices[qi], own.scores[qi]) if j >= 0}
            for c, j in enumerate(res.indices[qi]):
                want = by_doc.get(int(j), -np.inf) if j >= 0 else -np.inf
                assert res.signals[name][qi, c] == pytest.approx(want), (name, qi, c)
    with pytest.raises(ValueError, match="distinct"):
        HybridRetriever([a, b])  # both are named bm25


def test_pipeline_wraps_a_ranker_in_the_fused_stage_by_default():
    from pipeline import Pipeline

    hyb = HybridRetriever([BM25Retriever(), BM25Retriever(k1=1.5, b=0.9)], names=("bm25", "bm25b"))
    pipe = Pipeline(hyb, None, reranker=Overlap(), retrieve_k=6).index(_CORPUS)
    assert isinstance(pipe.reranker, FusedRerankStage)
    q = "what cured scurvy at sea"
    hits = hyb.search_with_signals([q], 6)
    keep = hits.indices[0] >= 0
    cands = [_CORPUS[int(j)] for j in hits.indices[0][keep]]
    expected = FusedRerankStage(Overlap()).rank(q, cands, {n: s[0][keep] for n, s in hits.signals.items()})
    assert [d.id for d in pipe.rank(q)] == [d.id for d in expected.documents]
    alone = Pipeline(hyb, None, reranker=Overlap(), retrieve_k=6, fuse=False)
    alone.corpus = pipe.corpus
    assert [d.id for d in alone.rank(q)] == [d.id for d in Overlap().rank(q, cands).documents]
    with pytest.raises(RuntimeError, match="needs an llm"):
        pipe.run(q)
    with pytest.raises(TypeError, match="score_pairs or rank"):
        Pipeline(hyb, None, reranker=object())
