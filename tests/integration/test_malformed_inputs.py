"""Issue 16, "done when": `ragfix` over every committed malformed input exits 2 with the file and the
line named, no traceback, and no output file left behind; the accepted inputs (UTF-8 BOM) run.

Each case runs from an empty folder with ``--out`` pointing into another empty folder, so any stray
write is seen. Most cases call the CLI's ``main`` in this process (an exception it does not turn into
exit 2 reaches pytest and fails the case: the in-process form of a traceback); the cases in
``SUBPROCESS`` run as a real ``python -m bench.cli`` process, which proves the exit status and the
clean stderr at the process boundary, and is the only way to give the registry another
``RAGFIX_MODELS_CONFIG`` from its first import. A process start costs ~2 s of imports; 25 of them were
a tenth of ``make test``.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "data" / "malformed"

RETRIEVAL = ["bench", "retrieval", "--systems", "bm25", "--data", "{f}", "--out", "{out}/r.json"]
SCORES = ["calibrate", "threshold", "--metric", "recall", "--target", "0.8", "--scorer-fingerprint", "fp",
          "--scores", "{f}", "--out", "{out}/spec.json"]
INTENT = ["train", "intent", "--train", "{f}", "--test", "{f}", "--out", "{out}/model"]
ANSWERS = ["diagnose", "answers", "--log", "{f}", "--out", "{out}/a.json"]
FAITH = ["diagnose", "answers", "--log", str(BAD / "ok-answers.jsonl"), "--faithfulness", "{f}", "--out", "{out}/a.json"]
REGISTRY = ["train", "eval-reranker", "--model", "reranker-l2", "--data", str(BAD / "ok-beir-bom"), "--out", "{out}/e.json"]

# (input, command, file named in the message, line (regex))
CASES = [
    ("beir-corpus-not-utf8", RETRIEVAL, "corpus.jsonl", "2"),
    ("beir-queries-not-utf8", RETRIEVAL, "queries.jsonl", "2"),
    ("beir-qrels-not-utf8", RETRIEVAL, "test.tsv", "2"),
    ("beir-duplicate-query-id", RETRIEVAL, "queries.jsonl", "3"),
    ("beir-duplicate-doc-id", RETRIEVAL, "corpus.jsonl", "3"),
    ("beir-qrels-inf", RETRIEVAL, "test.tsv", "2"),
    ("beir-qrels-nan", RETRIEVAL, "test.tsv", "2"),
    ("beir-qrels-fractional", RETRIEVAL, "test.tsv", "2"),
    ("beir-qrels-repeated-pair", RETRIEVAL, "test.tsv", "2"),
    ("beir-qrels-two-columns", RETRIEVAL, "test.tsv", "2"),
    ("beir-corpus-bad-json", RETRIEVAL, "corpus.jsonl", "2"),
    ("beir-queries-not-object", RETRIEVAL, "queries.jsonl", "2"),
    ("scores-label-infinity.jsonl", SCORES, "scores-label-infinity.jsonl", "2"),
    ("scores-label-fractional.csv", SCORES, "scores-label-fractional.csv", "3"),
    ("scores-not-utf8.csv", SCORES, "scores-not-utf8.csv", "3"),
    ("scores-bad-json.jsonl", SCORES, "scores-bad-json.jsonl", "2"),
    ("scores-score-not-number.jsonl", SCORES, "scores-score-not-number.jsonl", "2"),
    ("huge-field.csv", SCORES, "huge-field.csv", "3"),
    ("huge-field.csv", INTENT, "huge-field.csv", "3"),
    ("intent-not-utf8.csv", INTENT, "intent-not-utf8.csv", "3"),
    ("intent-bad-json.jsonl", INTENT, "intent-bad-json.jsonl", "2"),
    ("answers-not-utf8.jsonl", ANSWERS, "answers-not-utf8.jsonl", "2"),
    ("answers-bad-json.jsonl", ANSWERS, "answers-bad-json.jsonl", "2"),
    ("answers-missing-field.jsonl", ANSWERS, "answers-missing-field.jsonl", "2"),
    ("models-entry-not-mapping.yaml", REGISTRY, "models-entry-not-mapping.yaml", "7"),
    ("models-bad-yaml.yaml", REGISTRY, "models-bad-yaml.yaml", r"\d+"),
    ("faithfulness-bad-json", FAITH, "model.json", r"\d+"),
    ("faithfulness-coef-missing", FAITH, "model.json", r"\d+"),
]


# One case per command family crosses the process boundary; the registry's cases must.
SUBPROCESS = {"beir-corpus-bad-json", "scores-bad-json.jsonl", "models-entry-not-mapping.yaml", "models-bad-yaml.yaml"}


def _dirs(tmp_path):
    work, out = tmp_path / "cwd", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    return work, out


def _run(argv, tmp_path, env_extra=None):
    """``python -m bench.cli ARGV`` in a fresh process -> (returncode, stderr, work, out)."""
    work, out = _dirs(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "RAGFIX_CACHE": str(tmp_path / "cache"), **(env_extra or {})}
    argv = [a.replace("{out}", str(out)) for a in argv]
    p = subprocess.run([sys.executable, "-m", "bench.cli", *argv], cwd=work, env=env, capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stderr, work, out


def _run_here(argv, tmp_path, monkeypatch, capsys):
    """The CLI's ``main(ARGV)`` in this process, from the same empty folders -> (returncode, stderr, work, out)."""
    from bench.cli import main

    work, out = _dirs(tmp_path)
    monkeypatch.chdir(work)
    monkeypatch.setenv("RAGFIX_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    try:
        code = main([a.replace("{out}", str(out)) for a in argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    return code, capsys.readouterr().err, work, out


@pytest.mark.parametrize("name,command,named,line", CASES, ids=[f"{c[0]}-{c[1][1]}" for c in CASES])
def test_malformed_input_exits_2_naming_file_and_line(tmp_path, monkeypatch, capsys, name, command, named, line):
    f = BAD / name
    assert f.exists(), f"missing committed input {f}"
    argv = [a.replace("{f}", str(f)) for a in command]
    if name in SUBPROCESS:
        env = {"RAGFIX_MODELS_CONFIG": str(f)} if command is REGISTRY else None
        code, err, work, out = _run(argv, tmp_path, env)
    else:
        assert command is not REGISTRY, "registry cases need a fresh process: add them to SUBPROCESS"
        code, err, work, out = _run_here(argv, tmp_path, monkeypatch, capsys)
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in err
    assert re.search(rf"{re.escape(named)}:{line}:", err), err[-2000:]
    assert list(work.iterdir()) == [] and list(out.iterdir()) == []


def test_utf8_bom_inputs_are_accepted(tmp_path, monkeypatch, capsys):
    code, err, work, out = _run_here([a.replace("{f}", str(BAD / "ok-scores-bom.jsonl")) for a in SCORES], tmp_path,
                                     monkeypatch, capsys)
    assert code == 0, err[-2000:]
    assert (out / "spec.json").is_file()


def test_utf8_bom_beir_folder_is_accepted(tmp_path):
    code, err, work, out = _run([a.replace("{f}", str(BAD / "ok-beir-bom")) for a in RETRIEVAL], tmp_path)
    assert code == 0, err[-2000:]
    assert (out / "r.json").is_file() and "Traceback" not in err
