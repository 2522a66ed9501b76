"""``ragfix bench cascade`` on CLINC150 with real classifiers (cached vectors): shift alarms, clean does not."""
import json

import pytest

from bench.cli import main

pytestmark = pytest.mark.integration


def test_cascade_bench_alarms_on_shift_not_on_clean(tmp_path):
    out = tmp_path / "cascade.json"
    assert main(["bench", "cascade", "--limit", "2400", "--runs", "3", "--recal-window", "600", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    m = doc["metrics"]
    for key in ("requests_to_alarm", "false_alarm_rate", "escalation_rate_before_shift", "escalation_rate_after_shift",
                "cost_per_1k_before_shift_usd", "cost_per_1k_after_shift_usd"):
        assert key in m
    assert m["requests_to_alarm"] is not None and m["requests_to_alarm"] < 1000
    assert m["requests_to_alarm_runs"]["detected"] >= 2
    assert m["false_alarm_rate"] <= 0.25
    # the failure: the dashboard barely moves while the audited pass-through error leaves its budget
    assert abs(m["escalation_rate_after_shift"] - m["escalation_rate_before_shift"]) < 0.1
    main_run = m["main_run"]
    assert main_run["after_shift"]["audit_passthrough_error_lo"] > m["error_budget"] or \
        main_run["after_shift"]["audit_passthrough_error"] > m["error_budget"]
    recal = main_run["after_recalibration"]
    if recal["true_passthrough_error"] is None:  # nothing passed through: every request escalated
        assert recal["escalation_rate"] == 1.0, recal
    else:
        assert recal["true_passthrough_error"] <= m["error_budget"] + 0.02, recal
    assert m["ece_val"] < m["base_ece_val"]
    assert (tmp_path / "cascade_reliability.png").is_file()
