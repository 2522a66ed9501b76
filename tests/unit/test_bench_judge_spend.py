"""``ragfix bench judge-spend``: the day schedule's arithmetic and bad input (exit 2, no file)."""
import pytest

from bench.benchmarks.bench_judge_spend import dashboard_days
from bench.cli import main


def test_schedule_adds_the_stated_share_of_day0_pairs_a_day():
    panels = {"a": list(range(800)), "b": list(range(800))}
    days = dashboard_days(panels, queries=300, days=30, new_share=0.05, k=10)
    pairs = [sum(d.values()) * 10 for d in days]
    assert pairs[0] == 6000 and all(b - a == 300 for a, b in zip(pairs, pairs[1:]))
    with pytest.raises(ValueError, match="day 1 needs 315 queries, the data has 300"):
        dashboard_days({"a": list(range(300)), "b": list(range(300))}, queries=300, days=3, new_share=0.05, k=10)


@pytest.mark.parametrize("extra", [["--edit-day", "30"], ["--new-share", "1.5"], ["--days", "1"], ["--price-as", "no-such-llm"]])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, extra):
    out = tmp_path / "j.json"
    assert main(["bench", "judge-spend", "--out", str(out), *extra]) == 2
    assert "ragfix: error:" in capsys.readouterr().err and not list(tmp_path.iterdir())
