"""Attribution ledger: costs by hand arithmetic, per-task spend and savings, bad input refused."""
import sqlite3
import subprocess
import sys

import pytest

from distill.ledger import Ledger, LedgerFormatError, PriceMissingError, Prices

RAW = {"compute": {"cpu_core_hour_usd": 0.036, "gpu_hour_usd": 2.0},
       "llms": {"api-llm": {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 0.60}}}


def test_costs_match_hand_arithmetic_and_savings(tmp_path):
    with Ledger(tmp_path / "l.sqlite", Prices(RAW)) as led:
        usd = led.record("intent", "api-llm", kind="llm", tokens_in=1000, tokens_out=10, wall_s=1.0)
        assert usd == pytest.approx((1000 * 0.15 + 10 * 0.60) / 1e6)
        for _ in range(4):
            led.record("intent", "clf", kind="specialist", cpu_s=0.01)  # 0.01 s * 0.036 / 3600 = 1e-7
        led.record("relevance", "api-llm", kind="llm", tokens_in=500, tokens_out=1)
        spend = {(r["task"], r["kind"]): r for r in led.by_task()}
        assert spend[("intent", "specialist")]["usd"] == pytest.approx(4e-7)
        assert spend[("intent", "llm")]["calls"] == 1
        save = {r["task"]: r for r in led.savings()}
        assert save["intent"]["routed_usd"] == pytest.approx(1e-7)
        assert save["intent"]["saving_usd"] == pytest.approx(usd - 1e-7)
        assert save["relevance"]["routed_usd"] is None  # no specialist measured: no guess


def test_track_measures_seconds_and_records(tmp_path):
    with Ledger(tmp_path / "l.sqlite", Prices(RAW)) as led:
        with led.track("faithfulness", "ce") as rec:
            sum(i * i for i in range(200_000))
            rec.meta["n"] = 1
        (row,) = led.rows()
        assert row["cpu_s"] > 0 and row["wall_s"] > 0 and row["pricing"] == "compute"
        assert row["cost_usd"] == pytest.approx(row["cpu_s"] * 0.036 / 3600)


def test_missing_price_is_a_clear_error(tmp_path):
    with Ledger(tmp_path / "l.sqlite", Prices(RAW)) as led:
        with pytest.raises(PriceMissingError, match="no token price for model 'mystery'.*api-llm"):
            led.record("intent", "mystery", kind="llm", tokens_in=5)
        # priced_as names a listed model; compute pricing needs no token price
        assert led.record("intent", "smollm2", kind="llm", tokens_in=10, priced_as="api-llm") > 0
        assert led.record("intent", "smollm2", kind="llm", cpu_s=1.0, pricing="compute") == pytest.approx(1e-5)
        with pytest.raises(ValueError, match="task must be a non-empty"):
            led.record("", "api-llm")
        with pytest.raises(ValueError, match="tokens_in must be a number >= 0"):
            led.record("x", "api-llm", tokens_in=-1)


def test_not_a_ledger_is_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, I am not a database " * 100)
    with pytest.raises(LedgerFormatError, match="not an SQLite database"):
        Ledger(text, Prices(RAW))
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE emb (h TEXT)")
    db.commit()
    db.close()
    with pytest.raises(LedgerFormatError, match="not a ragfix ledger"):
        Ledger.open(other, Prices(RAW))
    with pytest.raises(FileNotFoundError):
        Ledger.open(tmp_path / "missing.sqlite", Prices(RAW))


def test_ledger_reopens_and_uses_wal(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path, Prices(RAW)) as led:
        led.record("intent", "api-llm", tokens_in=3)
    with Ledger.open(path, Prices(RAW)) as led:
        assert len(led.rows()) == 1
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_prices_yaml_of_the_repo_loads():
    from registry import load_prices

    p = load_prices()
    assert p.cpu_core_hour_usd > 0 and "gpt-4o-mini" in p.llms
    with pytest.raises(ValueError, match="cpu_core_hour_usd"):
        Prices({"llms": {}})


def test_report_cost_cli(tmp_path):
    from bench.report.cost import cost_report

    path = tmp_path / "l.sqlite"
    with Ledger(path, Prices(RAW)) as led:
        led.record("intent", "api-llm", tokens_in=1000, tokens_out=10)
        led.record("intent", "clf", kind="specialist", cpu_s=0.01)
    text = cost_report(str(path))
    assert "| intent | llm | api-llm |" in text and "x |" in text
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a ledger" * 200)
    import argparse

    from bench.report.cost import add_parser
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    args = ap.parse_args(["cost", "--ledger", str(bad)])
    assert args.func(args) == 2


def test_ledger_without_prices_refuses_to_price(tmp_path):
    """No hidden config read inside distill: a Ledger given no prices says how to pass them."""
    with Ledger(tmp_path / "l.sqlite") as led:
        with pytest.raises(ValueError, match="registry.load_prices"):
            led.record("intent", "gpt-4o-mini", kind="llm", tokens_in=10, tokens_out=1, wall_s=0.1)
        assert led.rows() == []
