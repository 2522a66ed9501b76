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
    assert main(["diagnose", "threshold", "--scores", str(f), "--spec", str(spec_path), "--scorer-fingerprint", "fp1"]) == 0
    g = _write(tmp / "logits.jsonl", np.log(s / (1 - s)), y)
    assert main(["diagnose", "threshold", "--scores", str(g), "--spec", str(spec_path), "--scorer-fingerprint", "fp1"]) == 1
    assert "DRIFT" in capsys.readouterr().out


def test_cli_errors_are_clear(data, capsys):
    tmp, s, y = data
    f = _write(tmp / "cal.jsonl", s, y, cohort=False)
    spec_path = tmp / "spec.json"
    main(["calibrate", "threshold", "--scores", str(f), "--metric", "recall", "--target", "0.9",
          "--scorer-fingerprint", "fp1", "--out", str(spec_path)])
    capsys.readouterr()
    # a spec from another scorer, no labels to re-check on: re-derive (exit 3), never ok
    unlabelled = tmp / "unlabelled.jsonl"
    unlabelled.write_text("".join(json.dumps({"score": float(v)}) + "\n" for v in s))
    assert main(["diagnose", "threshold", "--scores", str(unlabelled), "--spec", str(spec_path),
                 "--scorer-fingerprint", "fp2"]) == 3
    assert "SCORER CHANGED" in capsys.readouterr().out
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


# ----------------------------------------------------------------------------- issue 16: automatic fingerprint

def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_guard_fingerprints_the_model_itself_and_never_passes_a_swap_on_scores_alone(data, capsys):
    """A swapped model with the same score distribution: before, `diagnose threshold --spec` said ok
    (no --scorer-fingerprint given, check skipped); now the fingerprint comes from the model files,
    and a change needs an audit set that meets the target, or re-derivation (exit 3)."""
    from pathlib import Path

    tmp, s, y = data
    repo = Path(__file__).resolve().parents[2]
    model = _copy_model(repo / "models" / "faithfulness-lexical", tmp / "scorer")
    f = _write(tmp / "cal.jsonl", s, y, cohort=False)
    spec_path = tmp / "spec.json"
    assert main(["calibrate", "threshold", "--scores", str(f), "--metric", "recall", "--target", "0.8",
                 "--scorer", str(model), "--scorer-kind", "faithfulness", "--out", str(spec_path)]) == 0
    spec = ThresholdSpec.load(spec_path)
    assert spec.scorer_name == str(model) and len(spec.scorer_fingerprint) == 16
    # unchanged model, same distribution: ok without any fingerprint argument (taken from the spec's scorer)
    assert main(["diagnose", "threshold", "--scores", str(f), "--spec", str(spec_path)]) == 0
    # swap the weights behind the same path; scores keep the same distribution but lose the labels' order
    m = json.loads((model / "model.json").read_text())
    m["intercept"] = float(m["intercept"]) + 1.0
    (model / "model.json").write_text(json.dumps(m))
    unlabelled = tmp / "live.jsonl"
    unlabelled.write_text("".join(json.dumps({"score": float(v)}) + "\n" for v in s))
    capsys.readouterr()
    assert main(["diagnose", "threshold", "--scores", str(unlabelled), "--spec", str(spec_path)]) == 3
    assert "SCORER CHANGED" in capsys.readouterr().out
    # a labelled audit set on which recall at the cutoff collapsed (same score distribution, shuffled labels)
    shuffled = _write(tmp / "audit_bad.jsonl", s, np.random.default_rng(1).permutation(y), cohort=False)
    assert main(["diagnose", "threshold", "--scores", str(shuffled), "--spec", str(spec_path)]) == 3
    assert "NOT met" in capsys.readouterr().out
    # an audit set on which the new model still meets the target: ok, and it says to re-derive
    assert main(["diagnose", "threshold", "--scores", str(f), "--spec", str(spec_path)]) == 0
    assert ": met" in capsys.readouterr().out


def test_guard_refuses_to_guess_the_scorer(data, capsys):
    tmp, s, y = data
    f = _write(tmp / "cal.jsonl", s, y, cohort=False)
    spec_path = tmp / "spec.json"
    assert main(["calibrate", "threshold", "--scores", str(f), "--metric", "recall", "--target", "0.8",
                 "--scorer-fingerprint", "fp1", "--out", str(spec_path)]) == 0
    assert main(["diagnose", "threshold", "--scores", str(f), "--spec", str(spec_path)]) == 2
    assert "must know which model produced --scores" in capsys.readouterr().err


def test_exit_status_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["diagnose", "threshold", "--help"])
    out = capsys.readouterr().out
    assert "exit status" in out and "3  scorer changed" in out and "1  drift" in out
