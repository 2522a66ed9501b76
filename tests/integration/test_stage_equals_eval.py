"""The shipped path is the measured path: ``Pipeline``'s default rerank stage ranks SciFact exactly as
``ragfix train eval-reranker`` does for the stage it reports (``specialist``, 0.755 over 300 queries).

Same configuration on both sides: the committed reranker-l6 on fp32, the BM25 + MiniLM hybrid top
``DEPTH``, z-score CombSUM of (ce logit, bm25, dense). The evaluation batches its queries and caches its
scores; the pipeline answers one query at a time; the document order must be the same for every query.

``DEPTH`` is 40, not the reported 100: the stage's code (pool, z-scores over the pool, fusion, order) does
not depend on the depth, and 800 pairs instead of 2,000 on the pipeline side cut the test from ~58 s to
~25 s of the `make test` budget. Cost: 800 cross-encoder pairs on each side. Both sides run at the
process's torch thread count (the evaluation is not given ``threads``, so it does not change the count
for the tests after this one) on the same batches, so their logits are bit-identical and any difference
in order is a difference in the stage. The evaluation keeps its logits in its own ``PairScoreCache`` (as
``ragfix train eval-reranker`` does) in a ``warm_cache`` folder whose name hashes ``EVAL_SOURCES``, the
library versions and the thread count; a warm run rescores only the pipeline side. The evaluation still
retrieves, pools, fuses and ranks for real on those logits, and the pipeline computes every one of its
own. An edit to any file in ``EVAL_SOURCES`` (or ``RAGFIX_TEST_COLD=1``) makes both sides score afresh.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

N_QUERIES, DEPTH = 20, 40
# The code behind the evaluation side's cached logits: a change to any of them starts a fresh cache.
EVAL_SOURCES = ("bench/eval/rerank.py", "rerank/cross_encoder.py", "rerank/stage.py", "rerank/meanpool.py",
                "registry/__init__.py", "configs/models.yaml")


def test_pipeline_ranking_equals_the_evaluations(data_root, warm_cache):
    from data import load_beir
    from registry import Registry, load_cross_encoder, load_embedder
    from bench.eval.rerank import evaluate_reranker
    from pipeline import Pipeline
    from rerank.stage import FusedRerankStage
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    if "reranker-l6" not in Registry().names("cross-encoder"):
        pytest.skip("reranker-l6 is not registered")
    report = evaluate_reranker("reranker-l6", depth=DEPTH, limit=N_QUERIES,
                               cache_dir=warm_cache("stage-equals-eval", *EVAL_SOURCES),
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
