"""Distilled judge (IX): the student round-trips and learns; the shadow monitor is silent on clean and fires on shifted."""
import numpy as np
import pytest

from distill.agreement_monitor import ShadowMonitor
from distill.student import EmbeddingPairStudent, pair_features


def _data(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 16))
    y = rng.random(n) < 0.3
    d = np.where(y[:, None], q + rng.normal(scale=0.8, size=q.shape), rng.normal(size=q.shape)) + shift
    return q, d, y.astype(int)


def test_student_learns_teacher_verdicts_and_round_trips(tmp_path):
    q, d, y = _data(600, 0)
    st = EmbeddingPairStudent(embedder_name="toy").fit(q[:400], d[:400], y[:400])
    acc = (st.predict(q[400:], d[400:]) == y[400:]).mean()
    assert acc > max(y[400:].mean(), 1 - y[400:].mean()) + 0.15  # beats answering the majority verdict
    st2 = EmbeddingPairStudent.load(st.save(tmp_path / "s"))
    assert np.array_equal(st2.predict_proba(q, d), st.predict_proba(q, d)) and st2.embedder_name == "toy"
    assert pair_features(q[:3], d[:3]).shape == (3, 33)


def test_student_refuses_bad_input(tmp_path):
    q, d, y = _data(50, 1)
    with pytest.raises(ValueError, match="all 0"):
        EmbeddingPairStudent().fit(q, d, np.zeros(50, dtype=int))
    with pytest.raises(ValueError, match="0/1"):
        EmbeddingPairStudent().fit(q, d, np.full(50, 2))
    with pytest.raises(ValueError, match="one shape"):
        pair_features(q, d[:, :3])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "student.json").write_text('{"format_version": 99}')
    with pytest.raises(ValueError, match="format_version 99"):
        EmbeddingPairStudent.load(tmp_path / "s")


def _stream(mon, n, p_disagree, seed, teacher_calls):
    rng = np.random.default_rng(seed)
    served_teacher = 0
    for i in range(n):
        disagree = rng.random() < p_disagree

        def teacher(item, d=disagree):
            teacher_calls.append(item)
            return 1 if d else 0

        served = mon.route(i, 0, teacher)
        served_teacher += served != 0
    return served_teacher


def test_monitor_silent_on_clean_streams_fires_on_shifted_and_escalates():
    fired = 0
    for s in range(40):  # clean: disagreement at the held-out rate
        mon = ShadowMonitor.from_heldout(agree=950, n=1000, audit_share=0.05, horizon=500, seed=s)
        calls = []
        _stream(mon, 6000, 0.05, seed=100 + s, teacher_calls=calls)
        fired += mon.escalating
        assert abs(mon.n_audited_ / 6000 - 0.05) < 0.015 and len(calls) == mon.n_audited_
    assert fired <= 2
    mon = ShadowMonitor.from_heldout(agree=950, n=1000, audit_share=0.05, horizon=500, seed=0)
    calls = []
    _stream(mon, 6000, 0.30, seed=7, teacher_calls=calls)  # shifted: 30% disagreement
    assert mon.escalating and mon.alarm_item_ is not None and mon.n_escalated_ > 0
    assert mon.n_escalated_ == 6000 - mon.alarm_item_ + 1  # every item after the alarm went to the teacher
    assert len(mon.shadow_) == mon.n_audited_


def test_accept_only_when_agreement_is_back():
    mon = ShadowMonitor.from_heldout(agree=950, n=1000, seed=0)
    mon.record("x", 1, 0)
    mon.cusum.update([1] * 30)
    assert mon.escalating
    t = np.zeros(500, dtype=int)
    bad = t.copy()
    bad[:60] = 1  # 0.88 agreement
    r = mon.accept(bad, t, reference=0.95)
    assert not r.accepted and mon.escalating and r.agreement.estimate == pytest.approx(0.88)
    good = t.copy()
    good[:20] = 1  # 0.96
    assert mon.accept(good, t, reference=0.95).accepted and not mon.escalating
    with pytest.raises(ValueError, match="too high to monitor"):
        ShadowMonitor.from_heldout(agree=500, n=1000)


def test_feature_student_on_a_cheap_scorer_round_trips(tmp_path):
    from distill.student import FeatureStudent, score_features

    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    cheap = 1 / (1 + np.exp(-(2.5 * (y - 0.5) + rng.normal(scale=1.0, size=n) - 1.0)))  # miscalibrated: shifted logit
    X = score_features(cheap, ["a b c"] * n, ["a b x y"] * n)
    st = FeatureStudent(features="toy").fit(X[:300], y[:300])
    acc = (st.predict(X[300:]) == y[300:]).mean()
    assert acc > ((cheap[300:] > 0.5) == y[300:]).mean()  # the fitted threshold beats the cheap model's own 0.5
    st2 = FeatureStudent.load(st.save(tmp_path / "f"))
    assert np.array_equal(st2.predict_proba(X), st.predict_proba(X))
    with pytest.raises(ValueError, match="one length"):
        score_features(cheap[:3], ["q"] * 4, ["d"] * 4)
