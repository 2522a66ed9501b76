"""``ragfix distill judge`` and ``ragfix bench distill-drift``: bad input exits 2 with no traceback and no file."""
import pytest

from bench.cli import main


@pytest.mark.parametrize("argv", [
    ["distill", "judge", "--student", "svm:minilm"], ["bench", "distill-drift", "--student", "logreg"],
    ["distill", "judge", "--data", "scifact,msmarco"],
    ["distill", "judge", "--queries", "1"],
    ["bench", "distill-drift", "--audit-share", "0.2"],
    ["bench", "distill-drift", "--runs", "0"],
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv):
    out = tmp_path / ("d.json" if argv[0] == "bench" else "student")
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ragfix: error:") and "Traceback" not in err and not list(tmp_path.iterdir())


def test_split_by_query_keeps_queries_whole():
    from bench.recipes.distill import PoolPair, split_by_query

    pairs = [PoolPair("s", f"q{i // 10}", f"query {i // 10}", f"doc {i}", int(i % 10 == 0)) for i in range(200)]
    tr, te = split_by_query(pairs, 0.4, seed=0)
    assert len(tr) + len(te) == 200 and len(te) == 80
    assert not {pairs[i].qid for i in tr} & {pairs[i].qid for i in te}
