"""``ragfix index`` / ``ragfix score pairs``: bad input exits 2 with one line and writes nothing."""
from __future__ import annotations

import pytest

from bench.cli import main


@pytest.mark.parametrize("make, argv, message", [
    (lambda d: None, ["index", "--data", "{d}/missing"], "no such file or folder"),
    (lambda d: (d / "beir").mkdir(), ["index", "--data", "{d}/beir"], "no corpus.jsonl"),
    (lambda d: (d / "p.jsonl").write_text('{"query": "q"}\n'), ["score", "pairs", "--pairs", "{d}/p.jsonl"],
     "p.jsonl:1: need string fields"),
    (lambda d: (d / "p.jsonl").write_text(""), ["score", "pairs", "--pairs", "{d}/p.jsonl"], "no pairs"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, make, argv, message):
    make(tmp_path)
    out = tmp_path / "out.json"
    code = main([a.format(d=tmp_path) for a in argv] + ["--out", str(out), "--engine", "ray"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_unwritable_out_is_refused_before_work(tmp_path, capsys):
    code = main(["index", "--data", str(tmp_path), "--out", str(tmp_path / "no" / "such" / "dir" / "i.json")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["index", "--data", "x", "--out", "o", "--workers", "0"],
                                  ["index", "--data", "x", "--out", "o", "--engine", "spark"]])
def test_bad_flags_are_usage_errors(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
