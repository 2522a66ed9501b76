"""Project metrics against hand arithmetic and against pytrec_eval (trec_eval) on random runs, to 1e-6."""
import math

import numpy as np
import pytest

from bench.eval.metrics import evaluate, mrr_at_k, ndcg_at_k, recall_at_k


def test_hand_arithmetic():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"x": 0.9, "b": 0.8, "a": 0.7, "c": 0.6}}
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(qrels, run, 10)["q"] == pytest.approx(dcg / idcg)
    assert recall_at_k(qrels, run, 2)["q"] == pytest.approx(0.5)
    assert mrr_at_k(qrels, run, 10)["q"] == pytest.approx(0.5)
    assert mrr_at_k(qrels, run, 1)["q"] == 0.0


def test_query_missing_from_run_scores_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0}}
    assert evaluate(qrels, run, ("ndcg@10",))["ndcg@10"] == pytest.approx(0.5)


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ("map@10",))


def _random_case(rng, n_q=60, n_docs=200, graded=True):
    qrels, run = {}, {}
    for q in range(n_q):
        qid = f"q{q}"
        rel_docs = rng.choice(n_docs, size=rng.integers(1, 8), replace=False)
        qrels[qid] = {f"d{d}": int(rng.integers(1, 4) if graded else 1) for d in rel_docs}
        if rng.random() < 0.3:  # judged non-relevant documents
            qrels[qid][f"d{int(rng.integers(n_docs))}"] = 0
        qrels[qid] = {d: g for d, g in qrels[qid].items()}
        if not any(g > 0 for g in qrels[qid].values()):
            qrels[qid][f"d{int(rel_docs[0])}"] = 1
        cand = rng.choice(n_docs, size=rng.integers(5, 150), replace=False)
        run[qid] = {f"d{d}": float(s) for d, s in zip(cand, rng.random(len(cand)))}
    return qrels, run


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_pytrec_eval_on_random_runs(seed):
    import pytrec_eval

    rng = np.random.default_rng(seed)
    qrels, run = _random_case(rng, graded=seed % 2 == 0)
    ours = evaluate(qrels, run, ("ndcg@10", "recall@100", "ndcg@5", "recall@10"), per_query=True)[1]
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.5,10", "recall.10,100"})
    theirs = ev.evaluate(run)
    names = {"ndcg@10": "ndcg_cut_10", "ndcg@5": "ndcg_cut_5", "recall@100": "recall_100", "recall@10": "recall_10"}
    for m, per_q in ours.items():
        for q, v in per_q.items():
            assert v == pytest.approx(theirs[q][names[m]], abs=1e-6), (m, q)
    # MRR@10 from trec_eval's recip_rank on the run cut to its top 10
    cut = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    mrr = evaluate(qrels, run, ("mrr@10",), per_query=True)[1]["mrr@10"]
    for q in qrels:
        assert mrr[q] == pytest.approx(rr[q]["recip_rank"], abs=1e-6), q
