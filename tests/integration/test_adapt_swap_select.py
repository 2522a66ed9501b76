"""The adapted-embedder swap and `ragfix select` on a tiny folder, with real MiniLM and reranker-l6."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from cascade.thresholds import ScorerMismatchError, ThresholdGuard, ThresholdSpec
from registry import load_embedder
from retrieval.adapt import MarginGroup, save_fp16_embedder, train_margin_mse
from retrieval.cache import EmbeddingCache

pytestmark = pytest.mark.integration

DOCS = [
    ("d1", "Vitamin D deficiency", "Vitamin D deficiency is common in northern countries. Low levels of vitamin D are linked with weak bones in elderly people. Supplements with 800 IU daily reduce fracture risk in trials."),
    ("d2", "Statins and LDL", "Statins lower LDL cholesterol by inhibiting HMG-CoA reductase in the liver. Lower LDL reduces the risk of heart attacks in high risk patients. Muscle pain is the most common side effect reported by users."),
    ("d3", "BRCA1 mutations", "BRCA1 mutations raise the lifetime risk of breast cancer considerably. Carriers are offered screening with MRI from the age of thirty. Preventive surgery reduces the risk further in several cohort studies."),
    ("d4", "Malaria vaccines", "The RTS,S vaccine reduces clinical malaria episodes in young children. Protection wanes over the first years after the last dose. A booster dose restores part of the lost protection in field trials."),
    ("d5", "Sleep and memory", "Sleep after learning improves the consolidation of declarative memories. Slow wave sleep is thought to replay recent experiences in the hippocampus. Sleep deprivation impairs recall on the following day in students."),
    ("d6", "Aspirin and colorectal cancer", "Daily aspirin use is associated with fewer colorectal cancers after ten years. The effect appears only after long use in randomised trials. Bleeding risk limits its use in the general population today."),
]
QUERIES = [("q1", "vitamin D supplements prevent fractures", "d1"), ("q2", "statins reduce LDL cholesterol", "d2"),
           ("q3", "BRCA1 carriers breast cancer risk", "d3"), ("q4", "malaria vaccine booster", "d4"),
           ("q5", "sleep consolidates memory", "d5"), ("q6", "aspirin lowers colorectal cancer", "d6")]


def _tiny(root: Path, qrels: bool) -> Path:
    root.mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for i, t, x in DOCS:
            f.write(json.dumps({"_id": i, "title": t, "text": x}) + "\n")
    if qrels:
        (root / "qrels").mkdir()
        with open(root / "queries.jsonl", "w") as f:
            for q, t, _ in QUERIES:
                f.write(json.dumps({"_id": q, "text": t}) + "\n")
        (root / "qrels" / "test.tsv").write_text("".join(f"{q}\t{d}\t1\n" for q, _, d in QUERIES))
    return root


def test_adapted_folder_is_a_new_model_and_the_guard_refuses_the_old_spec(tmp_path, capsys):
    base = load_embedder("minilm")
    base.model.max_seq_length = 48  # keeps the three training steps fast
    groups = [MarginGroup(q, (DOCS[i][1], DOCS[(i + 1) % 6][1], DOCS[(i + 2) % 6][1]), (5.0, -1.0, -3.0), qid)
              for i, (qid, q, _) in enumerate(QUERIES)]
    stats = train_margin_mse(base.model, groups, tmp_path / "work", batch_size=2, max_steps=2, bf16=False, log=print)
    assert stats["steps"] == 2 and (tmp_path / "work" / "checkpoint" / "state.pt").is_file()
    stats = train_margin_mse(base.model, groups, tmp_path / "work", batch_size=2, max_steps=3, bf16=False, resume=True, log=print)
    assert stats["steps"] == 3 and "resumed at step 2" in capsys.readouterr().out
    folder = save_fp16_embedder(base.model, tmp_path / "models" / "minilm-tiny-gpl")
    adapted = load_embedder(str(folder))
    fresh = load_embedder("minilm")
    assert adapted.fingerprint != fresh.fingerprint
    # its corpus embeddings are a different cache entry: the swap re-encodes
    cache = EmbeddingCache(tmp_path / "cache")
    assert cache.path_for(adapted.fingerprint, "c") != cache.path_for(fresh.fingerprint, "c")
    # a threshold spec derived on the old embedder's scores is refused for the adapted one
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.4
    s = np.where(y, rng.normal(0.6, 0.1, 500), rng.normal(0.3, 0.1, 500))
    spec = ThresholdSpec.fit(s, y, metric="precision", target=0.8, scorer_fingerprint=fresh.fingerprint, scorer_name="minilm")
    ThresholdGuard(spec, fresh.fingerprint)
    with pytest.raises(ScorerMismatchError, match=fresh.fingerprint):
        ThresholdGuard(spec, adapted.fingerprint)


def test_select_with_qrels_reports_intervals_ab_and_label_free_agreement(tmp_path):
    data = _tiny(tmp_path / "ds", qrels=True)
    out = tmp_path / "s.json"
    assert main(["select", "--data", str(data), "--candidates", "bm25,minilm,hybrid", "--incumbent", "bm25",
                 "--pseudo-queries", "4", "--pool-depth", "2", "--n-boot", "200", "--work", str(tmp_path / "w"),
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["recommendation"] in {"bm25", "minilm", "hybrid"}
    for s in ("bm25", "minilm", "hybrid"):
        m = doc["metrics"][s]
        assert 0 <= m["ci95"]["ndcg@10"][0] <= m["ndcg@10"] <= m["ci95"]["ndcg@10"][1] <= 1
        assert sum(m["ab"].values()) == len(QUERIES)
    assert "kendall_tau" in doc["label_free"] and "top_matches" in doc["label_free"]
    assert doc["label_free"]["n_queries"] == 4
    assert out.with_suffix(".md").read_text().startswith("Selection on")


def test_select_without_qrels_ranks_by_cross_encoder_labels(tmp_path):
    data = _tiny(tmp_path / "ds", qrels=False)
    out = tmp_path / "s.json"
    assert main(["select", "--data", str(data), "--candidates", "bm25,minilm", "--pseudo-queries", "4",
                 "--pool-depth", "2", "--n-boot", "200", "--work", str(tmp_path / "w"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["n_queries"] == 0 and doc["recommendation"] in {"bm25", "minilm"}
    assert set(doc["metrics"]) == {"bm25", "minilm"} and "kendall_tau" not in doc["label_free"]
    assert doc["metrics"] == doc["label_free"]["metrics"]


def test_model_name_that_does_not_load_is_a_clear_error(tmp_path, capsys):
    data = _tiny(tmp_path / "ds", qrels=True)
    out = tmp_path / "s.json"
    assert main(["select", "--data", str(data), "--candidates", "bm25,models/no-such-model", "--out", str(out)]) == 2
    assert "embedder 'models/no-such-model': no such model folder" in capsys.readouterr().err
    assert not out.exists()
    assert main(["adapt", "embedder", "--data", str(data), "--base", "nope", "--out", str(tmp_path / "m"), "--max-steps", "1"]) == 2
    assert "unknown embedder 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
