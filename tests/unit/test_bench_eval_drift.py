"""``ragfix bench eval-drift`` building blocks: the release rule, the schedule, window sampling, registration."""
import numpy as np

from bench.benchmarks.bench_eval_drift import default_schedule, sample_window, shipped
from bench.cli import build_parser


def test_team_ships_only_offline_improvements():
    assert shipped({"bm25": 0.70, "bm25-tuned": 0.71, "minilm": 0.66, "hybrid": 0.72}) == ["bm25", "bm25-tuned", "hybrid"]


def test_schedule_covers_the_power_shares_and_starts_unshifted():
    tilt, nq = default_schedule()
    assert len(tilt) == len(nq) == 12 and nq[0] == 0 and tilt[0] == 1
    assert {0.02, 0.05, 0.10, 0.20, 0.50} <= set(nq) and nq == sorted(nq)


def test_window_has_the_stated_share_and_follows_the_tilt():
    rng = np.random.default_rng(0)
    sf, nq = np.arange(1000), np.arange(1000, 1500)
    w = np.where(sf < 100, 8.0, 1.0)
    idx = sample_window(rng, sf, w, nq, 400, 0.10)
    assert len(set(idx)) == 400 and np.sum(idx >= 1000) == 40
    assert np.mean(idx[idx < 1000] < 100) > 0.25  # 10% of the pool, tilted x8


def test_registered_under_bench():
    args = build_parser().parse_args(["bench", "eval-drift", "--out", "x.json"])
    assert args.func.__module__ == "bench.benchmarks.bench_eval_drift" and args.budget <= 200
