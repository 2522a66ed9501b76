"""Issue 16: result files get the user's umask; outputs are checked before the work; eval cache keys on content."""
import json
import os
import stat

import pytest

from bench.cli import main
from bench.report import write_results
from bench.eval.rerank import PairScoreCache, evaluate_reranker


def test_results_follow_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_results(tmp_path / "r.json", {"a": 1}, {"m": 1.0}, markdown="| a |\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_pair_cache_keys_on_texts_not_ids(tmp_path):
    c = PairScoreCache(tmp_path, "m-len128")
    k1 = PairScoreCache.key("what causes scurvy", "T", "vitamin C")
    c.add([(k1, 0.9)])
    again = PairScoreCache(tmp_path, "m-len128")
    assert again.get(k1) == 0.9
    assert PairScoreCache.key("what cures scurvy", "T", "vitamin C") not in again  # same ids, another query text
    assert PairScoreCache.key("what causes scurvy", "T", "vitamin D") not in again
    assert PairScoreCache.key("what causes scurvy", "", "T vitamin C") not in again  # title/text boundary kept
    assert PairScoreCache(tmp_path, "m-len256").get(k1) is None  # another setting, another file


def test_eval_reranker_checks_the_model_name_before_the_data(tmp_path):
    from registry import UnknownModelError

    with pytest.raises(UnknownModelError, match="nosuch"):
        evaluate_reranker("nosuch", data=tmp_path / "no-such-folder", cache_dir=tmp_path / "c")


def test_diagnose_answers_checks_out_folder_before_the_audit(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"query": "q", "passages": ["p"], "answer": "a"}) + "\n")
    assert main(["diagnose", "answers", "--log", str(log), "--out", str(tmp_path / "missing" / "r.json")]) == 2
    err = capsys.readouterr()
    assert "does not exist" in err.err and "answers" not in err.out
