"""SciFact test reproduces published first-stage numbers; the CLI handles bad input cleanly."""
import json

import pytest

from bench.benchmarks.bench_retrieval import run_retrieval_bench
from bench.cli import main

pytestmark = pytest.mark.integration


def test_scifact_bm25_minilm_hybrid_match_published(scifact):
    m = run_retrieval_bench(scifact, ["bm25", "minilm", "hybrid"])
    assert 0.66 <= m["bm25"]["ndcg@10"] <= 0.70  # Anserini BM25 flat: 0.679
    assert 0.62 <= m["minilm"]["ndcg@10"] <= 0.67  # MTEB all-MiniLM-L6-v2: ~0.645
    assert m["hybrid"]["ndcg@10"] >= max(m["bm25"]["ndcg@10"], m["minilm"]["ndcg@10"])
    assert m["bm25"]["recall@100"] > 0.85


def test_cli_writes_json_in_the_documented_shape(tmp_path, data_root):
    out = tmp_path / "r.json"
    assert main(["bench", "retrieval", "--data", str(data_root / "scifact"), "--systems", "bm25", "--limit", "20", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) >= {"config", "environment", "metrics"}
    assert set(doc["metrics"]["bm25"]) >= {"ndcg@10", "recall@100", "mrr@10"}
    assert doc["config"]["n_queries"] == 20
    assert out.with_suffix(".md").read_text().startswith("Retrieval on scifact")


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "retrieval", "--data", str(tmp_path / "missing"), "--systems", "bm25"]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "ds" / "qrels").mkdir(parents=True)
    (tmp_path / "ds" / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    (tmp_path / "ds" / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (tmp_path / "ds" / "qrels" / "test.tsv").write_text("q\ta\t1\n")
    assert main(["bench", "retrieval", "--data", str(tmp_path / "ds"), "--systems", "nope"]) == 2
    assert "unknown embedder 'nope'" in capsys.readouterr().err
