"""``ragfix bench thresholds`` on real SciFact and CLINC150 subsets with real embedders (cached vectors)."""
import json

import pytest

from bench.cli import main

pytestmark = pytest.mark.integration


def test_thresholds_bench_shows_failure_fix_and_guard(tmp_path):
    out = tmp_path / "thresholds.json"
    assert main(["bench", "thresholds", "--limit", "40", "--train-per-intent", "20", "--out", str(out)]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert set(m) == {"scifact_relevance", "clinc_oos"}
    for task in m.values():
        for key in ("before_swap", "after_swap"):
            for which in ("round_cutoff", "derived"):
                assert {"precision", "precision_lo", "precision_hi", "recall", "recall_lo", "recall_hi"} <= set(task[key][which])
        assert task["guard_fired_on_swap"] is True
        assert task["guard_drift_on_swap"]["is_drift"] is True
        assert task["guard_drift_without_swap"]["is_drift"] is False
        after = task["after_swap"]
        assert not after["round_cutoff_within_bound"] and after["round_cutoff_miss"] >= 0.2  # wide miss after the swap
        assert after["derived_within_bound"]  # re-derived threshold meets the target within its bound
    assert (tmp_path / "thresholds.md").read_text().count("|") > 20
    assert (tmp_path / "thresholds_specs" / "clinc_oos.before_swap.json").is_file()
