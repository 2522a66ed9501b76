"""Issue 16: the reranker evaluation's score cache never returns another query's score."""
import json

import pytest

from bench.eval.rerank import evaluate_reranker

pytestmark = pytest.mark.integration


def _beir(root, queries):
    root.mkdir(parents=True, exist_ok=True)
    docs = [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(
        ["vitamin C deficiency causes scurvy", "insulin regulates blood glucose", "the mitochondria make ATP",
         "aspirin inhibits cyclooxygenase", "malaria is spread by mosquitoes", "statins lower cholesterol"])]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text("q1\td0\t1\nq2\td1\t1\n")
    return root


def test_changed_query_texts_with_the_same_ids_are_rescored(tmp_path):
    cache = tmp_path / "cache"
    a = _beir(tmp_path / "a", {"q1": "what causes scurvy", "q2": "what controls blood sugar"})
    first = evaluate_reranker("reranker-l2", depth=6, data=a, cache_dir=cache)
    assert first["pairs_scored_now"] == 12
    assert evaluate_reranker("reranker-l2", depth=6, data=a, cache_dir=cache)["pairs_scored_now"] == 0  # resumes
    b = _beir(tmp_path / "b", {"q1": "what controls blood sugar", "q2": "what causes scurvy"})  # ids swapped texts
    swapped = evaluate_reranker("reranker-l2", depth=6, data=b, cache_dir=cache)
    assert swapped["pairs_scored_now"] == 0  # same (query text, doc text) pairs: legitimately reused
    c = _beir(tmp_path / "c", {"q1": "which vitamin prevents scurvy", "q2": "hormone for glucose"})
    changed = evaluate_reranker("reranker-l2", depth=6, data=c, cache_dir=cache)
    assert changed["pairs_scored_now"] == 12  # new texts, same ids: nothing reused
    # and the scores are the model's for these texts, not the cached ones of the old queries
    fresh = evaluate_reranker("reranker-l2", depth=6, data=c, cache_dir=tmp_path / "fresh")
    assert changed["metrics"] == fresh["metrics"]


def test_teacher_score_cache_notices_new_weights_under_the_same_path(tmp_path):
    import shutil
    from pathlib import Path

    import numpy as np

    from rerank.train import TrainPair, teacher_scores

    repo = Path(__file__).resolve().parents[2]
    pairs = [TrainPair("what causes scurvy", "vitamin C deficiency causes scurvy", 1.0, "t", "q1"),
             TrainPair("what causes scurvy", "insulin regulates blood glucose", 0.0, "t", "q1")]
    teacher = tmp_path / "teacher"
    shutil.copytree(repo / "models" / "reranker-minilm-l2", teacher)
    a = teacher_scores(pairs, teacher, tmp_path / "work")
    np.testing.assert_array_equal(teacher_scores(pairs, teacher, tmp_path / "work"), a)  # cached
    shutil.rmtree(teacher)
    shutil.copytree(repo / "models" / "reranker-minilm-l6", teacher)  # another model, same path
    b = teacher_scores(pairs, teacher, tmp_path / "work")
    fresh = teacher_scores(pairs, teacher, tmp_path / "fresh")
    np.testing.assert_array_equal(b, fresh)
    assert not np.array_equal(a, b)
