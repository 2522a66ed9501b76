"""Issue 16: out-of-range numbers stop at the command line (exit 2) instead of becoming a result."""
import pytest

from bench.cli import main


@pytest.mark.parametrize("argv", [
    ["bench", "retrieval", "--data", "x", "--k", "0"],
    ["bench", "rerank", "--data", "x", "--k", "0"],
    ["bench", "rerank", "--data", "x", "--limit", "-3"],
    ["bench", "rerank", "--data", "x", "--adaptive-target", "1.5"],
    ["train", "eval-reranker", "--model", "reranker-l2", "--depth", "0"],
    ["calibrate", "threshold", "--scores", "s.jsonl", "--metric", "recall", "--target", "nan",
     "--scorer-fingerprint", "x", "--out", "o.json"],
    ["calibrate", "threshold", "--scores", "s.jsonl", "--metric", "recall", "--target", "0.8", "--confidence", "1",
     "--scorer-fingerprint", "x", "--out", "o.json"],
    ["train", "intent", "--C", "0", "--out", "m"],
])
def test_out_of_range_number_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --" in err and ("expected" in err)
