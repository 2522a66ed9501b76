"""bench.benchmarks.bench_serve bookkeeping (outcome counts, percentiles, batch means from /metrics deltas) and
the ``ragfix serve`` / ``ragfix bench serve`` parsers."""
from __future__ import annotations

import argparse

import pytest

from bench.benchmarks.bench_serve import _batch_stats, _levels, _summarise
from bench.cli import build_parser, main


def test_summarise_counts_each_outcome_and_uses_only_accepted_latencies():
    records = [(0.0, 0.010, "ok"), (0.1, 0.020, "ok"), (0.2, 5.0, "rejected"), (0.3, 9.0, "errors")]
    m = _summarise(records, wall=2.0)
    assert (m["ok"], m["rejected"], m["errors"], m["sent"]) == (2, 1, 1, 4)
    assert m["rps"] == 1.0 and m["p50_ms"] == pytest.approx(15.0) and m["p99_ms"] < 20.0001


def test_summarise_with_nothing_accepted():
    m = _summarise([(0.0, 1.0, "rejected")], wall=1.0)
    assert m["p99_ms"] is None and m["ok"] == 0 and m["rps"] == 0.0


def test_batch_stats_are_means_over_the_scrape_delta():
    before = {"ragfix_serve_batch_requests_sum": 10, "ragfix_serve_batch_requests_count": 5,
              "ragfix_serve_batch_pairs_sum": 100, "ragfix_serve_batch_pairs_count": 10}
    after = {"ragfix_serve_batch_requests_sum": 40, "ragfix_serve_batch_requests_count": 10,
             "ragfix_serve_batch_pairs_sum": 400, "ragfix_serve_batch_pairs_count": 20}
    assert _batch_stats(before, after) == {"requests_per_pass": 6.0, "pairs_per_pass": 30.0}
    assert _batch_stats(after, after) == {"requests_per_pass": None, "pairs_per_pass": None}


@pytest.mark.parametrize("text", ["", "0,8", "1,x", "-1"])
def test_levels_refuse_bad_input(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--concurrency"):
        _levels(text)


def test_parsers_registered():
    args = build_parser().parse_args(["bench", "serve", "--concurrency", "1,8", "--duration", "3", "--out", "x.json"])
    assert args.concurrency == [1, 8] and args.duration == 3.0
    args = build_parser().parse_args(["serve", "--port", "0", "--naive"])
    assert args.port == 0 and args.naive


def test_serve_bad_config_exits_2_without_traceback(tmp_path, capsys):
    bad = tmp_path / "s.yaml"
    bad.write_text("max_queue: lots\n")
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "max_queue='lots'" in err and "Traceback" not in err


def test_plot_writes_a_png(tmp_path):
    from bench.benchmarks.bench_serve import plot

    row = {"p99_ms": 100.0, "rps": 2.0}
    r = {"capacity_rps": 2.0, "metrics": {s: {"1": row, "overload": {"p99_ms": None, "rps": 1.0}} for s in ("naive", "fixed")}}
    out = plot(r, tmp_path / "s.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
