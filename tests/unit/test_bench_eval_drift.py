"""``ragfix bench eval-drift`` building blocks: the release rule, the schedule, window sampling, registration."""
import numpy as np
import pytest

from bench.benchmarks.bench_eval_drift import default_schedule, sample_window, shipped
from bench.cli import build_parser


def test_team_ships_only_offline_improvements():
    assert shipped({"bm25": 0.70, "bm25-tuned": 0.71, "minilm": 0.66, "hybrid": 0.72}) == ["bm25", "bm25-tuned", "hybrid"]


def test_schedule_covers_the_power_shares_and_starts_unshifted():
    tilt, nq = default_schedule()
    assert len(tilt) == len(nq) == 12 and nq[0] == 0 and tilt[0] == 1
    assert {0.02, 0.05, 0.10, 0.20, 0.50} <= set(nq) and nq == sorted(nq)


def test_window_has_the_stated_share_and_follows_the_tilt():
    rng = np.random.default_rng(0)
    sf, nq = np.arange(1000), np.arange(1000, 1500)
    w = np.where(sf < 100, 8.0, 1.0)
    idx = sample_window(rng, sf, w, nq, 400, 0.10)
    assert len(set(idx)) == 400 and np.sum(idx >= 1000) == 40
    assert np.mean(idx[idx < 1000] < 100) > 0.25  # 10% of the pool, tilted x8


def test_registered_under_bench():
    args = build_parser().parse_args(["bench", "eval-drift", "--out", "x.json"])
    assert args.func.__module__ == "bench.benchmarks.bench_eval_drift" and args.budget <= 200


def _toy_stream(seed: int = 0):
    """600 queries: 400 'scifact' (dims 0-3), 200 'nq' (dims 4-7); per-query metric tied to the embedding."""
    import types

    rng = np.random.default_rng(seed)
    q = rng.normal(size=(600, 8)) * np.r_[np.ones(4), np.full(4, 0.05)]
    q[400:] = rng.normal(size=(200, 8)) * np.r_[np.full(4, 0.05), np.ones(4)]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    base = np.clip(0.6 + 0.3 * q[:, 0] + rng.normal(0, 0.1, 600), 0, 1)
    rel = {"a": base, "b": np.clip(base + 0.02, 0, 1), "c": np.clip(base + 0.04, 0, 1)}
    sig = {r: np.column_stack([v + rng.normal(0, 0.1, 600), rng.normal(size=600)]) for r, v in rel.items()}
    return types.SimpleNamespace(query_emb=q.astype(np.float32)), rel, sig, np.arange(100), np.arange(100, 400), np.arange(400, 600)


def test_story_windows_do_not_depend_on_the_labelling_budget():
    from bench.benchmarks.bench_eval_drift import run_story

    d, rel, sig, ev, pool, nq = _toy_stream()
    w10, _ = run_story(d, rel, ev, pool, nq, window=80, budget=10, seed=0)
    w20, _ = run_story(d, rel, ev, pool, nq, window=80, budget=20, seed=0)
    assert [w["true"] for w in w10] == [w["true"] for w in w20]  # round 1 drew a new story per budget


def test_story_reports_model_assisted_and_plain_estimates_and_refuses_on_nq():
    from bench.benchmarks.bench_eval_drift import run_story

    d, rel, sig, ev, pool, nq = _toy_stream(1)
    weeks, _ = run_story(d, rel, ev, pool, nq, window=80, budget=20, seed=0, signals=sig)
    assert len(weeks) == 12 and weeks[-1]["refused"] and weeks[-1]["estimated"] is None
    first = weeks[0]
    assert not first["refused"] and first["estimated"] != first["estimated_iw"]
    assert abs(first["estimated"] - first["true"]) < 0.1 and first["refreshed"] is not None


def test_detection_summary_false_alarm_rate_is_over_the_unshifted_streams():
    from bench.benchmarks.bench_eval_drift import detection_summary

    shifted = [7, 8, 8, 3, None]                   # onset week 6, NQ at 10% in week 8
    clean = [None] * 99 + [4]
    m = detection_summary(shifted, clean, onset=6, ten=8)
    assert (m["runs"], m["detected_runs"], m["detected_by_10pct_week"], m["alarms_before_onset"]) == (5, 3, 3, 1)
    assert m["median_delay"] == 2.0 and m["false_alarms"] == 1 and m["false_alarm_runs"] == 100
    assert m["false_alarm_rate"] == 0.01 and 0.04 < m["false_alarm_upper95"] < 0.06


def test_retrieval_signals_treat_padded_slots_as_absent():
    """BM25 pads with index -1 when fewer than k documents match; round 2 read -1 as the last passage."""
    import types

    from bench.benchmarks.bench_eval_drift import retrieval_signals

    docs = np.eye(12, 4, dtype=np.float32)[:12]
    docs[-1] = [1.0, 0, 0, 0]                           # the last passage is identical to the query
    q = np.array([[1.0, 0, 0, 0]], dtype=np.float32)
    d = types.SimpleNamespace(query_emb=q, doc_emb=docs)
    full = np.arange(1, 11)[None]                       # ten real documents, none of them the last one
    padded = np.r_[[1, 2], [-1] * 8][None]              # two matches, eight padded slots
    mk = lambda ind, sc: types.SimpleNamespace(indices=ind, scores=np.asarray(sc, np.float32))  # noqa: E731
    other = mk(np.r_[[11], np.arange(1, 10)][None], [np.linspace(1, 0.1, 10)])
    f = retrieval_signals(d, mk(padded, [[2.0, 1.0] + [0.0] * 8]), [other])
    # cosine of the query to its padded slots is 0, not 1 (the last passage's); overlap counts the real matches only
    assert f[0, 0] == 0.0 and f[0, 2] == 0.0
    assert f[0, 4] == 0.2 and f[0, 5] == 0.0 and f[0, 6] == 0.5   # overlap {1, 2}; top-1 is doc 1, rank 2 in other
    g = retrieval_signals(d, mk(full, [np.linspace(2, 1, 10)]), [other])
    assert g.shape == f.shape and g[0, 4] == 0.9


def test_cross_encoder_signals_judge_each_releases_top3_once_per_content(tmp_path):
    """Columns (top-1 logit, mean, max over the top 3) per release; a padded slot scores as the floor; pairs
    shared between releases are scored once and a second call reads them all from the content-keyed cache."""
    from bench.benchmarks.bench_eval_drift import StreamData, cross_encoder_signals
    from registry import load_cross_encoder
    from retrieval.types import Document, SearchResults

    docs = [Document("a", "Aspirin lowers the risk of heart attack in adults.", "Aspirin"),
            Document("b", "The Eiffel Tower is in Paris.", "Paris"),
            Document("c", "Statins reduce LDL cholesterol.", "Statins"),
            Document("d", "Penguins live in the southern hemisphere.", "Penguins")]
    d = StreamData(docs, {"q1": "does aspirin prevent heart attacks", "q2": "where is the eiffel tower"}, {}, {})
    one = SearchResults(np.array([[0, 2, 3], [1, 3, -1]]), np.zeros((2, 3), np.float32))
    two = SearchResults(np.array([[2, 0, 3], [1, 0, 3]]), np.zeros((2, 3), np.float32))
    sig = cross_encoder_signals(d, {"one": one, "two": two}, model="reranker-l2", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 6  # 5 of "one" + the 1 pair of "two" it lacks
    ce = load_cross_encoder("reranker-l2")
    direct = ce.score_pairs([(d.queries["q1"], docs[0].full_text()), (d.queries["q1"], docs[2].full_text()),
                             (d.queries["q1"], docs[3].full_text())])
    a = sig["one"]
    assert a.shape == (2, 3) and sig["two"].shape == (2, 3)
    np.testing.assert_allclose(a[0], [direct[0], direct.mean(), direct.max()], atol=1e-5)
    assert (a[:, 2] >= a[:, 1]).all() and a[0, 0] > sig["two"][0, 0]  # aspirin abstract beats statins for q1
    import json

    floor = min(json.loads(line)[2] for line in files[0].read_text().splitlines())  # lowest logit of all 6 pairs
    q2 = ce.score_pairs([(d.queries["q2"], docs[1].full_text()), (d.queries["q2"], docs[3].full_text())])
    np.testing.assert_allclose(a[1], [q2[0], (q2.sum() + floor) / 3, max(q2.max(), floor)], atol=1e-5)
    again = cross_encoder_signals(d, {"one": one, "two": two}, model="reranker-l2", cache_dir=tmp_path)
    assert len(files[0].read_text().splitlines()) == 6  # nothing rescored
    np.testing.assert_allclose(again["one"], a, atol=1e-6)


def test_cross_encoder_signals_deeper_judgement_adds_expected_dcg_columns(tmp_path):
    """``top`` > 3 keeps round 4's three columns (over the top 3) and adds expected DCG (sigmoid(logit) /
    log2(rank + 1) summed), the largest probability, the judge's favourite's reciprocal rank and the mean logit."""
    from bench.benchmarks.bench_eval_drift import StreamData, cross_encoder_signals
    from registry import load_cross_encoder
    from retrieval.types import Document, SearchResults

    docs = [Document("a", "Aspirin lowers the risk of heart attack in adults.", "Aspirin"),
            Document("b", "The Eiffel Tower is in Paris.", "Paris"),
            Document("c", "Statins reduce LDL cholesterol.", "Statins"),
            Document("d", "Penguins live in the southern hemisphere.", "Penguins")]
    d = StreamData(docs, {"q1": "does aspirin prevent heart attacks"}, {}, {})
    good = SearchResults(np.array([[0, 2, 3, 1]]), np.zeros((1, 4), np.float32))
    late = SearchResults(np.array([[3, 2, 1, 0]]), np.zeros((1, 4), np.float32))
    sig = cross_encoder_signals(d, {"good": good, "late": late}, model="reranker-l2", top=4, cache_dir=tmp_path)
    v = load_cross_encoder("reranker-l2").score_pairs([(d.queries["q1"], docs[i].full_text()) for i in (0, 2, 3, 1)])
    p = 1 / (1 + np.exp(-v))
    g = sig["good"][0]
    assert sig["good"].shape == (1, 7)
    np.testing.assert_allclose(g[:3], [v[0], v[:3].mean(), v[:3].max()], atol=1e-5)
    np.testing.assert_allclose(g[3:], [(p / np.log2([2, 3, 4, 5])).sum(), p.max(), 1 / (1 + v.argmax()), v.mean()],
                               atol=1e-5)
    late_row = sig["late"][0]
    assert g[3] > late_row[3] and g[5] == 1.0 and late_row[5] == 0.25  # the aspirin abstract first vs last
    with pytest.raises(ValueError, match="top 3"):
        cross_encoder_signals(d, {"good": good}, model="reranker-l2", top=2, cache_dir=tmp_path)


def test_eval_split_probe_parses_split_ranges():
    import argparse

    import pytest

    from bench.probes.probe_eval_drift_splits import _splits

    assert _splits("0-3") == [0, 1, 2, 3] and _splits("5") == [5]
    with pytest.raises(argparse.ArgumentTypeError):
        _splits("4-2")


def test_eval_split_probe_markdown_lists_only_splits_with_compared_weeks():
    from bench.probes.probe_eval_drift_splits import render_markdown

    wk = {"week": 5, "error": 0.04, "oracle_error": 0.02}
    res = {"n_eval": 300, "shipped": ["bm25", "hybrid"],
           "splits": [{"split": 0, "weeks": [wk], "max_error": 0.04, "meets_bar": False}, {"split": 1, "weeks": []}],
           "summary": {"splits": 2, "splits_with_weeks": 1, "weeks_compared": 1, "splits_meeting_bar": 0,
                       "oracle_splits_meeting_bar": 1, "bar": 0.03, "stale_gap": 0.05, "error_median": 0.04,
                       "error_max": 0.04, "within_bar_share": 0.0, "signed_error_mean": 0.04, "signed_error_sd": None,
                       "ci95_coverage": 1.0, "iw_error_median": 0.05, "iw_within_bar_share": 0.0,
                       "oracle_error_median": 0.02, "oracle_within_bar_share": 1.0}}
    md = render_markdown(res)
    assert "| 0 | 5 | 0.0400 | 0.0200 | no |" in md and "| 1 |" not in md
    assert "1 of 2 splits have such a week" in md


def test_export_logs_refuses_a_week_outside_the_story_before_loading_anything(tmp_path, capsys):
    import pytest

    from bench.probes.export_eval_drift_logs import main as export_main

    with pytest.raises(SystemExit) as e:
        export_main(["--week", "12", "--out-dir", str(tmp_path / "logs")])
    assert e.value.code == 2 and "weeks 0-11" in capsys.readouterr().err and not (tmp_path / "logs").exists()


def test_live_release_ships_in_order_over_the_weeks():
    from bench.benchmarks.bench_eval_drift import live_release

    assert [live_release(["a", "b", "c"], w, 12) for w in (0, 3, 4, 7, 8, 11)] == ["a", "a", "b", "b", "c", "c"]
