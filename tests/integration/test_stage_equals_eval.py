"""The shipped path is the measured path: ``Pipeline``'s default rerank stage ranks SciFact exactly as
``ragfix train eval-reranker`` does for the stage it reports (``specialist``, 0.755 over 300 queries).

Same configuration on both sides: the committed reranker-l6 on fp32, the BM25 + MiniLM hybrid top 100,
z-score CombSUM of (ce logit, bm25, dense). The evaluation batches its queries and caches its scores;
the pipeline answers one query at a time; the document order must be the same for every query.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

N_QUERIES, DEPTH = 20, 100


def test_pipeline_ranking_equals_the_evaluations(tmp_path, data_root):
    from data import load_beir
    from registry import Registry, load_cross_encoder, load_embedder
    from bench.eval.rerank import evaluate_reranker
    from pipeline import Pipeline
    from rerank.stage import FusedRerankStage
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    if "reranker-l6" not in Registry().names("cross-encoder"):
        pytest.skip("reranker-l6 is not registered")
    report = evaluate_reranker("reranker-l6", depth=DEPTH, limit=N_QUERIES, threads=1, cache_dir=tmp_path / "cache",
                               data=data_root / "scifact", keep_runs=True, bm25_pool=False)
    evaluated = report["runs"]["specialist"]
    assert "ce_only_bm25" not in report["metrics"]  # only the stage's own pool was scored
    assert len(evaluated) == N_QUERIES

    ds = load_beir(data_root / "scifact", "test").limit(N_QUERIES)
    hybrid = HybridRetriever([BM25Retriever(), DenseRetriever(load_embedder("minilm"))], names=("bm25", "dense"))
    pipe = Pipeline(hybrid, None, reranker=load_cross_encoder("reranker-l6"), retrieve_k=DEPTH).index(ds.corpus)
    assert isinstance(pipe.reranker, FusedRerankStage)  # the default: a cross-encoder becomes the fused stage
    differ = []
    for qid, query in ds.queries.items():
        shipped = [d.id for d in pipe.rank(query)]
        run = evaluated[qid]
        measured = sorted(run, key=lambda d: -run[d])
        if shipped != measured:
            first = next(i for i, (a, b) in enumerate(zip(shipped, measured)) if a != b) if len(shipped) == len(measured) else -1
            differ.append((qid, first))
    assert not differ, f"pipeline and evaluation rank differently (query, first differing position): {differ}"
    print(f"stage nDCG@10 on {N_QUERIES} queries: {report['metrics']['specialist']['ndcg@10']:.4f}")
