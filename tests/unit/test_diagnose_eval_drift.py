"""``ragfix diagnose eval-drift`` end to end on a small log (MiniLM embeddings), and its bad-input errors."""
import json

import pytest

from bench.cli import main

TOPICS = ["insulin", "tumour suppressor genes", "gut microbiota", "statin therapy", "malaria vaccines",
          "antibiotic resistance", "stem cell niches", "blood pressure", "influenza transmission", "bone density",
          "vitamin D", "macrophage activation", "HIV reservoirs", "sleep deprivation", "obesity in children"]
VERBS = ["increases the risk of", "reduces mortality from", "is associated with", "has no effect on"]
OUTCOMES = ["type 2 diabetes", "colorectal cancer", "heart failure", "dementia"]
NEW = ["who won the world cup in {}", "when did the olympics take place in {}", "who sang the hit song of {}",
       "what movie won best picture in {}"]


def claims(n, offset=0):
    out = []
    for i in range(offset, offset + n):
        out.append(f"{TOPICS[i % len(TOPICS)]} {VERBS[(i // 3) % 4]} {OUTCOMES[(i // 2) % 4]}".capitalize() + ".")
    return out


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def logs(tmp_path):
    ev = write(tmp_path / "eval.jsonl", [{"query": q, "metric": 0.8 if i % 2 else 0.6, "timestamp": "2026-01-01"}
                                          for i, q in enumerate(claims(60))])
    traffic = claims(30, offset=60) + [NEW[i % 4].format(1960 + i) for i in range(30)]
    tr = write(tmp_path / "traffic.jsonl", [{"query": q} for q in traffic])
    return tmp_path, ev, tr


def test_diagnose_reports_drift_new_cluster_refusal_and_queries_to_label(logs, capsys):
    tmp, ev, tr = logs
    out = tmp / "report.json"
    lab = tmp / "to_label.jsonl"
    assert main(["diagnose", "eval-drift", "--eval", str(ev), "--traffic", str(tr), "--out", str(out), "--clusters", "4",
                 "--to-label-out", str(lab)]) == 0
    rows = [json.loads(x) for x in lab.read_text().splitlines()]
    first = rows[0]["provenance"]
    assert len(rows) == 20 and first["reason"] == "uncovered" and first["line"] > 30  # the new kind sits on lines 31-60
    assert tr.read_text().splitlines()[first["line"] - 1] == json.dumps({"query": rows[0]["query"]})
    assert len(first["refreshes_eval"]["sha256"]) == 12
    rep = json.loads(out.read_text())
    assert rep["metrics"]["tests"]["novelty (nearest-eval distance)"]["is_drift"]
    grown = rep["clusters"][0]
    assert grown["growth"] > 0.3 and any(t in grown["top_terms"] for t in ("won", "world", "cup", "olympics", "song", "movie"))
    est = rep["metrics"]["estimate"]
    assert est["refused"] and "does not cover" in est["message"]  # half the traffic is a new kind
    assert rep["to_label"] and all(r["uncovered"] for r in rep["to_label"][:10])
    assert out.with_suffix(".md").is_file() and "Label next" in capsys.readouterr().out


def test_diagnose_estimates_when_traffic_is_covered(tmp_path, capsys):
    ev = write(tmp_path / "e.jsonl", [{"query": q, "metric": 0.5} for q in claims(45)])
    tr = write(tmp_path / "t.jsonl", [{"query": q} for q in claims(45, offset=45)])
    out = tmp_path / "r.json"
    assert main(["diagnose", "eval-drift", "--eval", str(ev), "--traffic", str(tr), "--out", str(out), "--clusters", "3"]) == 0
    est = json.loads(out.read_text())["metrics"]["estimate"]
    assert not est["refused"] and est["estimate"] == pytest.approx(0.5) and est["ess"] > 1


@pytest.mark.parametrize("rows,needle", [
    ([], "empty eval log"),
    ([{"query": "a", "metric": 1}, {"query": "b", "metric": 1}, "{not json"], ":3: not valid JSON"),
    ([{"query": "a", "metric": 1}, {"query": "b"}], ":2: mismatched fields"),
    ([{"query": "a", "metric": "high"}], ":1: 'metric' must be a finite number"),
    ([{"text_": "a"}], ":1: row has no non-empty string field 'query'"),
])
def test_bad_eval_log_exits_2_with_file_and_line(logs, capsys, rows, needle):
    tmp, _, tr = logs
    bad = write(tmp / "bad.jsonl", rows)
    out = tmp / "never.json"
    assert main(["diagnose", "eval-drift", "--eval", str(bad), "--traffic", str(tr), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and needle in err and "Traceback" not in err
    assert not out.exists()


def test_bad_traffic_log_and_relevant_without_corpus(logs, capsys):
    tmp, ev, _ = logs
    bad = write(tmp / "tr.jsonl", [{"query": "x"}] * 12 + [{"q": "y"}])
    assert main(["diagnose", "eval-drift", "--eval", str(ev), "--traffic", str(bad)]) == 2
    assert "tr.jsonl:13" in capsys.readouterr().err
    rel = write(tmp / "rel.jsonl", [{"query": q, "relevant": ["d1"]} for q in claims(12)])
    assert main(["diagnose", "eval-drift", "--eval", str(rel), "--traffic", str(ev)]) == 2
    assert "--corpus" in capsys.readouterr().err


def test_signals_give_the_model_assisted_estimate_where_plain_reweighting_misses(tmp_path):
    # The metric follows a logged signal (easy queries score 0.8, hard ones 0.3); traffic is the same kind of
    # query but 80% easy, against half of the eval set: its true mean is 0.7. Query texts do not tell easy from
    # hard, so reweighting by query embeddings stays near the eval mean; the predictor reads the signal.
    ev = write(tmp_path / "e.jsonl", [{"query": q, "metric": 0.8 if i % 2 else 0.3, "signals": [float(i % 2), 1.0]}
                                      for i, q in enumerate(claims(45))])
    hard = set(range(0, 45, 5))
    tr = write(tmp_path / "t.jsonl", [{"query": q, "signals": [0.0 if i in hard else 1.0, 1.0]}
                                      for i, q in enumerate(claims(45, offset=45))])
    out = tmp_path / "r.json"
    assert main(["diagnose", "eval-drift", "--eval", str(ev), "--traffic", str(tr), "--out", str(out), "--clusters", "3"]) == 0
    m = json.loads(out.read_text())["metrics"]
    true = (0.8 * (45 - len(hard)) + 0.3 * len(hard)) / 45
    ma, iw = m["estimate_model_assisted"], m["estimate"]
    assert not ma["refused"] and abs(ma["estimate"] - true) < 0.02 and ma["predictor_r2_out_of_fold"] > 0.9
    assert abs(iw["estimate"] - true) > 0.1  # plain reweighting cannot see which queries are easy
    assert "Model-assisted estimate" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("ev_sig,tr_sig,needle", [
    ([1.0], None, "carries 'signals' but"),
    ([1.0], [1.0, 2.0], "log the same signals"),
    (["x"], [1.0], ":1: 'signals' must be a non-empty list of numbers"),
    ([float("nan")], [1.0], ":1: 'signals' holds a NaN"),
])
def test_bad_signals_exit_2_naming_the_problem(tmp_path, capsys, ev_sig, tr_sig, needle):
    ev = write(tmp_path / "e.jsonl", [{"query": q, "metric": 0.5, "signals": ev_sig} for q in claims(12)])  # NaN as JSON's NaN
    tr = write(tmp_path / "t.jsonl", [{"query": q, **({"signals": tr_sig} if tr_sig else {})} for q in claims(12, 12)])
    out = tmp_path / "never.json"
    assert main(["diagnose", "eval-drift", "--eval", str(ev), "--traffic", str(tr), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and not out.exists()


def test_signals_on_some_rows_only_name_the_line(tmp_path, capsys):
    rows = [{"query": q, "metric": 0.5, "signals": [1.0]} for q in claims(12)]
    rows[4] = {"query": rows[4]["query"], "metric": 0.5}
    rows[7]["signals"] = [1.0, 2.0]
    ev = write(tmp_path / "e.jsonl", rows)
    tr = write(tmp_path / "t.jsonl", [{"query": q, "signals": [1.0]} for q in claims(12, 12)])
    assert main(["diagnose", "eval-drift", "--eval", str(ev), "--traffic", str(tr)]) == 2
    assert "e.jsonl:5: mismatched fields" in capsys.readouterr().err
    rows[4]["signals"] = [1.0]
    write(tmp_path / "e.jsonl", rows)
    assert main(["diagnose", "eval-drift", "--eval", str(ev), "--traffic", str(tr)]) == 2
    assert "e.jsonl:8: 2 signals where the first row has 1" in capsys.readouterr().err
