"""``bench specialists`` never deletes a user's ledger without --overwrite-ledger, and never leaves a partial one."""
import sqlite3

import pytest

import bench.benchmarks.bench_specialists as bs
from bench.cli import main
from distill.ledger import Ledger
from registry import load_prices


def _user_ledger(path):
    with Ledger(path, load_prices()) as led:
        led.record("intent", "gpt-4o-mini", tokens_in=123)
    return path.read_bytes()


def _rows(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT task, tokens_in FROM calls ORDER BY id").fetchall()
    finally:
        db.close()


def _intent_that_fails(ledger, judge, folder, limit, judge_limit, seed):
    ledger.record("intent", "intent-clinc150", kind="specialist", cpu_s=0.01)  # some rows written, then a crash
    raise RuntimeError("the intent model failed half-way")


def _intent_that_works(ledger, judge, folder, limit, judge_limit, seed):
    ledger.record("intent", "intent-clinc150", kind="specialist", cpu_s=0.01)
    return {"specialist": {"accuracy": 0.9, "oos_recall": 0.5}}


def test_existing_ledger_is_refused_without_the_flag(tmp_path, capsys):
    ledger = tmp_path / "spec.ledger.sqlite"
    before = _user_ledger(ledger)
    code = main(["bench", "specialists", "--tasks", "intent", "--judge-limit", "0", "--out", str(tmp_path / "spec.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "spec.ledger.sqlite" in err and "--overwrite-ledger" in err and "Traceback" not in err
    assert ledger.read_bytes() == before and _rows(ledger) == [("intent", 123)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.ledger.sqlite"]


def test_failed_run_leaves_no_partial_ledger_and_keeps_the_old_one(tmp_path, monkeypatch):
    monkeypatch.setattr(bs, "bench_intent", _intent_that_fails)
    out = tmp_path / "spec.json"
    with pytest.raises(RuntimeError, match="half-way"):
        bs.run_specialists_bench(out, judge_limit=0, tasks=("intent",))
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    ledger = tmp_path / "spec.ledger.sqlite"
    _user_ledger(ledger)
    with pytest.raises(RuntimeError, match="half-way"):
        bs.run_specialists_bench(out, judge_limit=0, tasks=("intent",), overwrite_ledger=True)
    assert _rows(ledger) == [("intent", 123)]  # replaced only on success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.ledger.sqlite"]


def test_successful_run_replaces_the_ledger_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(bs, "bench_intent", _intent_that_works)
    out = tmp_path / "spec.json"
    ledger = tmp_path / "spec.ledger.sqlite"
    _user_ledger(ledger)
    bs.run_specialists_bench(out, judge_limit=0, tasks=("intent",), overwrite_ledger=True)
    assert [r[0] for r in _rows(ledger)] == ["intent"] and _rows(ledger)[0][1] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json", "spec.ledger.sqlite", "spec.md"]
    with Ledger.open(ledger) as led:
        assert led.rows()[0]["model"] == "intent-clinc150"
