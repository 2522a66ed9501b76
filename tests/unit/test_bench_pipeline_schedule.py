"""The pipeline bench compares variants side by side: interleaved per request, paired savings (VIII)."""
import types

import pytest

from bench.benchmarks.bench_pipeline import _drive_interleaved, _paired_saving, _rerank_rounds


class _Timed:
    """A pipeline stand-in that reports a given TTFT and records when it ran (the scheduler is under test)."""

    def __init__(self, name: str, ttft_s: float, log: list) -> None:
        self.name, self.ttft_s, self.log = name, ttft_s, log

    def run(self, query, history=None):
        self.log.append((self.name, query, history))
        return types.SimpleNamespace(ttft_s=self.ttft_s, total_s=self.ttft_s + 0.5)


def test_variants_interleave_per_request_with_rotating_order_and_pair_by_request():
    log: list = []
    pipes = {"a": _Timed("a", 2.0, log), "b": _Timed("b", 1.5, log), "c": _Timed("c", 1.0, log)}
    out = _drive_interleaved(pipes, ["q0", "q1", "q2"], histories=[["h0"], ["h1"], ["h2"]])
    assert [n for n, _, _ in log] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each request: all, rotated
    assert all(h == [q.replace("q", "h")] for _, q, h in log)  # each request keeps its own history
    assert out["a"]["ttft"]["p50_ms"] == pytest.approx(2000.0) and out["a"]["ttft_ms"] == [2000.0] * 3
    saving = _paired_saving(out["a"], out["c"])
    assert saving["mean_ms"] == pytest.approx(1000.0) and saving["requests_faster"] == 3
    assert saving["mean_ci_ms"] == [pytest.approx(1000.0), pytest.approx(1000.0)]
    assert _paired_saving(out["c"], out["a"])["requests_faster"] == 0


def test_rerank_rounds_alternate_and_take_medians():
    calls: list = []

    class _Scorer:
        def __init__(self, name):
            self.name = name

        def score_pairs(self, pairs):
            calls.append(self.name)
            return [0.0] * len(pairs)

    r = _rerank_rounds(_Scorer("per"), _Scorer("mb"), [[("q", "d")]] * 2, concurrency=1, rounds=3)
    # one round = every batch through one side; the side that goes first flips every round
    assert calls == ["per"] * 2 + ["mb"] * 2 + ["mb"] * 2 + ["per"] * 2 + ["per"] * 2 + ["mb"] * 2
    assert r["rounds"] == 3 and len(r["per_request_rps_all"]) == 3 and r["ratio"] > 0
