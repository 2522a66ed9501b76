"""ragfix adapt / select without models: no test-split leakage, bad input, bootstrap and query kinds."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.cli.adapt import build_groups, pseudo_queries
from bench.cli import main
from bench.cli.select import paired_bootstrap, query_kinds
from data import DatasetError
from rerank.train import _norm

_LEAK = "Vitamin D supplements given daily prevent hip fractures in elderly women."


def _folder(root: Path) -> Path:
    """Documents whose sentences can be ICT queries; one sentence equals a test query (and a train claim)."""
    (root / "qrels").mkdir(parents=True)
    topics = ["vitamin", "statin", "malaria", "sleep", "aspirin", "insulin", "asthma", "measles"]
    with open(root / "corpus.jsonl", "w") as f:
        for i, t in enumerate(topics):
            first = _LEAK if i == 0 else f"The {t} study enrolled many adult patients across several large hospitals."
            text = (f"{first} Follow up of the {t} cohort lasted for more than five full years. "
                    f"Researchers measured the main {t} outcome with standard blinded clinical methods. "
                    f"Adverse events related to {t} treatment were rare and mostly mild in all groups.")
            f.write(json.dumps({"_id": f"d{i}", "title": f"{t} trial", "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        f.write(json.dumps({"_id": "t1", "text": _LEAK}) + "\n")
        f.write(json.dumps({"_id": "t2", "text": "statin adverse events are mild"}) + "\n")
        f.write(json.dumps({"_id": "r1", "text": "malaria cohort follow up lasted five years"}) + "\n")
        f.write(json.dumps({"_id": "r2", "text": _LEAK.upper()}) + "\n")  # a train claim equal to a test claim
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nt1\td0\t1\nt2\td1\t1\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nr1\td2\t1\nr2\td0\t1\n")
    return root


def test_pseudo_queries_never_carry_a_test_query_or_its_pairing(tmp_path):
    folder = _folder(tmp_path / "ds")
    corpus, queries = pseudo_queries(folder, n_ict=50, query_log_split="train", log=lambda m: None)
    banned = {_norm(_LEAK), _norm("statin adverse events are mild")}
    assert queries, "the folder yields pseudo-queries"
    assert all(_norm(q.text) not in banned for q in queries)
    assert not any(q.qid in {"log-train:t1", "log-train:t2", "log-train:r2"} for q in queries)
    assert any(q.qid == "log-train:r1" for q in queries)  # the clean train claim is kept, as text only
    # Every ICT document but the leaking sentence's own could have been drawn; d0's sentence is the test claim.
    ict_sentences = {q.text for q in queries if q.qid.startswith("ict:")}
    assert _LEAK not in ict_sentences
    ranked = {"bm25": np.array([list(range(len(corpus)))] * len(queries))}
    for q, docs in build_groups(corpus, queries, ranked, n_neg=3):
        assert _norm(q.text) not in banned  # so no (test query, judged doc) pair can be scored or trained on
        assert q.positive not in docs


def test_query_log_split_test_is_refused(tmp_path):
    with pytest.raises(ValueError, match="test queries are for evaluation only"):
        pseudo_queries(_folder(tmp_path / "ds"), n_ict=5, query_log_split="test")


@pytest.mark.parametrize("command", [["adapt", "embedder", "--max-steps", "1", "--out"], ["select", "--out"]])
def test_folder_without_documents_exits_2_and_writes_nothing(tmp_path, capsys, command):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out" / "x.json"
    assert main([*command, str(out), "--data", str(tmp_path / "empty"), *(["--candidates", "bm25"] if command[0] == "select" else [])]) == 2
    assert "no corpus.jsonl" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_adapt_without_a_budget_is_refused(tmp_path, capsys):
    assert main(["adapt", "embedder", "--data", str(_folder(tmp_path / "ds")), "--out", str(tmp_path / "m")]) == 2
    assert "--max-steps or --max-minutes" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_paired_bootstrap_separates_a_real_gain_from_noise():
    rng = np.random.default_rng(1)
    base = rng.random(300)
    better = paired_bootstrap(base + 0.05, base)
    assert better["delta_ci95"][0] > 0
    same = paired_bootstrap(base + rng.normal(0, 0.05, 300), base)
    assert same["delta_ci95"][0] < 0 < same["delta_ci95"][1]
    assert better["ci95"][0] < better["mean"] < better["ci95"][1]
    with pytest.raises(ValueError, match="equal non-empty"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


def test_query_kinds():
    df = Counter({"il-6": 1, "cancer": 900, "aspirin": 40})
    kinds = query_kinds({"a": "IL-6 raises cancer risk", "b": "aspirin lowers risk in 40% of the patients who take it daily",
                         "c": "cancer"}, df, 1000)
    assert kinds["digits"] == ["a", "b"]
    assert kinds["identifier"] == ["a"]
    assert kinds["rare_term"] == ["a"]
    assert kinds["short<=8"] == ["a", "c"] and kinds["mid9-15"] == ["b"]
