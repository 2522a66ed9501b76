"""Lexical faithfulness specialist: features, fit/save/load, bad input (issue 3, failure modes II and V)."""
import json

import numpy as np
import pytest

from cascade.support_features import FEATURES, LexicalFaithfulnessScorer, support_features

EVIDENCE = "Marie Curie was born in Warsaw in 1867. She won the Nobel Prize in Physics in 1903."


def test_features_see_unsupported_names_and_numbers():
    good = dict(zip(FEATURES, support_features(EVIDENCE, "Warsaw", "Where was Marie Curie born?")))
    bad = dict(zip(FEATURES, support_features(EVIDENCE, "She was born in Krakow in 1871", "Where was Marie Curie born?")))
    assert good["in_evidence"] == 1.0 and good["novel"] == 0 and good["exact"] == 1.0
    assert bad["novel"] >= 2 and bad["names_in_evidence"] < 1.0 and bad["exact"] == 0.0
    # question words are not novel: the answer may repeat them
    q = dict(zip(FEATURES, support_features(EVIDENCE, "Curie physicist", "Which physicist is Curie?")))
    assert q["novel"] == 0 and q["in_question"] == 1.0


def _toy():
    ev, cl, q, y = [], [], [], []
    for i in range(40):
        ev.append(f"The river {i} flows through town{i} and joins the sea at port{i}.")
        q.append(f"Where does river {i} join the sea?")
        cl.append(f"port{i}"), y.append(1)
        ev.append(ev[-1]), q.append(q[-1]), cl.append(f"It joins at harbour{i + 100} near city{i + 7}"), y.append(0)
    return ev, cl, q, y


def test_fit_save_load_roundtrip(tmp_path):
    ev, cl, q, y = _toy()
    s = LexicalFaithfulnessScorer.fit(ev, cl, y, q)
    p = s.predict_proba(ev, cl, q)
    assert (p[np.array(y) == 1] > 0.5).all() and (p[np.array(y) == 0] < 0.5).all()
    s.save(tmp_path / "m")
    t = LexicalFaithfulnessScorer.load(tmp_path / "m")
    assert np.allclose(t.predict_proba(ev, cl, q), p)
    assert not (tmp_path / "m" / "model.json.tmp").exists()


def test_bad_input_is_refused_with_advice(tmp_path):
    ev, cl, q, y = _toy()
    s = LexicalFaithfulnessScorer.fit(ev, cl, y, q)
    with pytest.raises(ValueError, match="claim\\[0\\] is empty"):
        s.predict_proba(["evidence"], ["  "])
    with pytest.raises(TypeError, match="evidence\\[0\\] must be str"):
        s.predict_proba([None], ["x"])
    with pytest.raises(ValueError, match="one of each"):
        s.predict_proba(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="both 0"):
        LexicalFaithfulnessScorer.fit(ev, cl, [1] * len(y), q)
    with pytest.raises(FileNotFoundError, match="ragfix train faithfulness"):
        LexicalFaithfulnessScorer.load(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text(json.dumps({"format": "something-else/3", "features": []}))
    with pytest.raises(ValueError, match="re-train"):
        LexicalFaithfulnessScorer.load(tmp_path / "other")
    (tmp_path / "other" / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LexicalFaithfulnessScorer.load(tmp_path / "other")


def test_over_long_evidence_is_truncated_and_counted():
    ev, cl, q, y = _toy()
    s = LexicalFaithfulnessScorer.fit(ev, cl, y, q, max_words=50)
    long = " ".join(["filler"] * 200) + " port3"
    s.predict_proba([long, ev[0]], ["port3", cl[0]], ["q", q[0]])
    assert s.n_truncated_ == 1 and s.n_scored_ == 2
