"""Status lines and progress bars go through logging/tqdm on stderr; stdout carries the report only;
``--quiet`` silences status, ``--verbose`` adds debug, and the two together are refused."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from bench.cli import main
from bench.report.progress import progress


@pytest.fixture
def scores(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    s = 1 / (1 + np.exp(-rng.normal(np.where(y == 1, 1.5, -0.5), 1.0)))
    f = tmp_path / "scores.jsonl"
    f.write_text("".join(json.dumps({"score": float(a), "label": int(b)}) + "\n" for a, b in zip(s, y)))
    return f


def _calibrate(scores, out, *flags) -> list[str]:
    return [*flags, "calibrate", "threshold", "--scores", str(scores), "--metric", "precision", "--target", "0.6",
            "--scorer-fingerprint", "fp", "--out", str(out)]


def test_status_on_stderr_report_on_stdout_and_quiet_silences_status(scores, tmp_path, capsys):
    assert main(_calibrate(scores, tmp_path / "a.json")) == 0
    cap = capsys.readouterr()
    assert "wrote " + str(tmp_path / "a.json") in cap.err and "wrote" not in cap.out
    assert cap.out.startswith("threshold ")  # the report itself
    assert main(_calibrate(scores, tmp_path / "b.json", "--quiet")) == 0
    quiet = capsys.readouterr()
    assert "wrote" not in quiet.err and quiet.out == cap.out  # same report, no status
    assert (tmp_path / "b.json").is_file()


def test_verbose_and_quiet_together_exit_2(scores, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(_calibrate(scores, tmp_path / "c.json", "--verbose", "--quiet"))
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_progress_bar_follows_the_bench_logger_level(capsys):
    bench = logging.getLogger("bench")
    old = bench.level
    try:
        bench.setLevel(logging.WARNING)  # a library caller that configured nothing: silent
        assert list(progress(range(5), "quiet-loop")) == [0, 1, 2, 3, 4]
        assert "quiet-loop" not in capsys.readouterr().err
        bench.setLevel(logging.INFO)  # what `ragfix` sets by default
        assert list(progress(range(5), "loud-loop", unit="query")) == [0, 1, 2, 3, 4]
        err = capsys.readouterr().err
        assert "loud-loop" in err and "5/5" in err
    finally:
        bench.setLevel(old)
