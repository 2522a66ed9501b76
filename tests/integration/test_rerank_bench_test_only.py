"""Issue 16: ``bench rerank`` on a BEIR folder with only a test split runs (no train split needed
unless a variant uses the adaptive rule, which then takes its documented default)."""
import json

import pytest

from bench.cli import main

pytestmark = pytest.mark.integration


def _beir_test_only(root):
    root.mkdir(parents=True)
    docs = [{"_id": f"d{i}", "text": t} for i, t in enumerate(
        ["vitamin C deficiency causes scurvy", "insulin regulates blood glucose", "the mitochondria make ATP",
         "scurvy was common among sailors", "blood glucose rises after meals", "ATP stores energy"])]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "scurvy cause"}\n{"_id": "q2", "text": "blood glucose"}\n')
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("q1\td0\t1\nq2\td1\t1\n")
    return root


def test_rerank_bench_without_train_split(tmp_path, capsys):
    data = _beir_test_only(tmp_path / "ds")
    out = tmp_path / "r.json"
    rc = main(["bench", "rerank", "--data", str(data), "--model", "reranker-l2", "--pruner", "", "--k", "6",
               "--min-k", "2", "--variants", "naive,adaptive", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["adaptive"]["ratio"] == 0.5 and "no qrels/train.tsv" in doc["adaptive"]["how"]
    assert set(doc["metrics"]) == {"naive", "adaptive"}
    rc = main(["bench", "rerank", "--data", str(data), "--model", "reranker-l2", "--pruner", "", "--k", "6",
               "--variants", "naive", "--out", str(out)])
    assert rc == 0 and json.loads(out.read_text())["adaptive"] is None
