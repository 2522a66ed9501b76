"""``ragfix calibrate threshold`` / ``ragfix diagnose threshold`` end to end on a small JSONL file."""
import json

import numpy as np
import pytest

from bench.cli import main
from cascade.thresholds import ThresholdSpec


def _write(path, scores, labels, cohort=True):
    with open(path, "w") as fh:
        for i, (s, y) in enumerate(zip(scores, labels)):
            row = {"score": None if np.isnan(s) else float(s), "label": int(y)}
            if cohort:
                row["segment"] = "a" if i % 2 else "b"
            fh.write(json.dumps(row) + "\n")
    return path


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(int)
    s = 1 / (1 + np.exp(-rng.normal(np.where(y == 1, 1.5, -0.5), 1.0)))
    return tmp_path, s, y


def test_calibrate_then_diagnose(data, capsys):
    tmp, s, y = data
    f = _write(tmp / "cal.jsonl", s, y)
    spec_path = tmp / "spec.json"
    assert main(["calibrate", "threshold", "--scores", str(f), "--metric", "precision", "--target", "0.8",
                 "--scorer-fingerprint", "fp1", "--cohort-field", "segment", "--out", str(spec_path)]) == 0
    spec = ThresholdSpec.load(spec_path)
    assert set(spec.achieved["per_cohort"]) == {"a", "b"} and spec.achieved["precision_lo"] >= 0.8
    capsys.readouterr()
    assert main(["diagnose", "threshold", "--scores", str(f), "--threshold", "0.5", "--cohort-field", "segment"]) == 0
    out = capsys.readouterr().out
    assert "cutoff 0.5" in out and "precision" in out and "\n  a " in out
    # same distribution, right scorer: guard ok (exit 0); rescaled scores (a logits release): drift (exit 1)
    assert main(["diagnose", "threshold", "--scores", str(f), "--spec", str(spec_path)]) == 0
    g = _write(tmp / "logits.jsonl", np.log(s / (1 - s)), y)
    assert main(["diagnose", "threshold", "--scores", str(g), "--spec", str(spec_path)]) == 1
    assert "DRIFT" in capsys.readouterr().out


def test_cli_errors_are_clear(data, capsys):
    tmp, s, y = data
    f = _write(tmp / "cal.jsonl", s, y, cohort=False)
    spec_path = tmp / "spec.json"
    main(["calibrate", "threshold", "--scores", str(f), "--metric", "recall", "--target", "0.9",
          "--scorer-fingerprint", "fp1", "--out", str(spec_path)])
    capsys.readouterr()
    # a spec from another scorer
    assert main(["diagnose", "threshold", "--scores", str(f), "--spec", str(spec_path),
                 "--scorer-fingerprint", "fp2"]) == 2
    assert "fp1" in capsys.readouterr().err
    # a NaN score
    s2 = s.copy()
    s2[3] = np.nan
    n = _write(tmp / "nan.jsonl", s2, y)
    assert main(["calibrate", "threshold", "--scores", str(n), "--metric", "recall", "--target", "0.9",
                 "--scorer-fingerprint", "fp1", "--out", str(tmp / "x.json")]) == 2
    assert "NaN" in capsys.readouterr().err
    # a target no threshold can meet
    assert main(["calibrate", "threshold", "--scores", str(f), "--metric", "precision", "--target", "0.999",
                 "--scorer-fingerprint", "fp1", "--out", str(tmp / "y.json")]) == 2
    assert "no threshold reaches precision" in capsys.readouterr().err
    # an empty window
    (tmp / "empty.jsonl").write_text("")
    assert main(["diagnose", "threshold", "--scores", str(tmp / "empty.jsonl"), "--threshold", "0.5"]) == 2
    assert "no rows" in capsys.readouterr().err
