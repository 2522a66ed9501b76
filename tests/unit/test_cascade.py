"""Cascade: unbiased audit, alarm on shifted traffic but not on clean, recalibration, state survives restart."""
import numpy as np
import pytest

from cascade import Cascade


def _stream(n, seed, shift=False):
    """Calibrated cheap stage (P(correct) = confidence) on clean traffic; on shifted traffic a third of
    requests come from unseen intents where the cheap stage is about as confident but right only 40% of the time."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.85, 1.0, n)
    p_correct = conf.copy()
    if shift:
        unseen = rng.random(n) < 0.35
        conf[unseen] = rng.uniform(0.85, 0.97, unseen.sum())  # about as confident; never the most confident
        p_correct[unseen] = 0.4
    correct = rng.random(n) < p_correct
    return conf, correct


def _run(c: Cascade, conf, correct):
    for cf, ok in zip(conf, correct):
        c.decide(cf, "a", lambda ok=ok: "a" if ok else "b")


def _cascade(tmp_path, name="c.sqlite", **kw):
    args = dict(threshold=0.9, error_budget=0.08, audit_rate=0.2, horizon=2000, alpha=0.05, recal_window=400,
                cheap_cost=1.0, expensive_cost=10.0, seed=0, synchronous="NORMAL")  # logic tests: no fsync per decision
    args.update(kw)
    return Cascade(tmp_path / name, **args)


def test_clean_traffic_no_alarm_and_unbiased_audit(tmp_path):
    conf, correct = _stream(3000, 1)
    c = _cascade(tmp_path)
    _run(c, conf, correct)
    s = c.stats()
    assert not s["alarm"]
    true_err = 1 - correct[conf >= 0.9].mean()
    assert s["passthrough_error_lo"] <= true_err <= s["passthrough_error_hi"]
    assert s["escalation_rate"] == pytest.approx(np.mean(conf < 0.9), abs=1e-9)


def test_shifted_traffic_alarms_with_flat_escalation(tmp_path):
    c = _cascade(tmp_path)
    conf, correct = _stream(1000, 2)
    _run(c, conf, correct)
    before = c.stats()
    conf2, correct2 = _stream(2000, 3, shift=True)
    _run(c, conf2, correct2)
    after = c.stats(since_seq=1000)
    assert c.alarm
    assert abs(after["escalation_rate"] - before["escalation_rate"]) < 0.05  # the flat dashboard
    assert after["passthrough_error_lo"] > 0.08  # the audit sees what the dashboard does not


def test_recalibration_restores_error_budget(tmp_path):
    c = _cascade(tmp_path)
    conf, correct = _stream(3000, 4, shift=True)
    _run(c, conf[:1500], correct[:1500])
    assert c.alarm
    old = c.threshold
    c.start_recalibration()
    _run(c, conf[1500:1900], correct[1500:1900])
    assert not c.alarm and c.threshold > old
    # fresh shifted traffic: the true pass-through error under the new threshold is within budget
    conf3, correct3 = _stream(20000, 5, shift=True)
    passed = conf3 >= c.threshold
    assert 1 - correct3[passed].mean() <= 0.08


def test_state_survives_restart(tmp_path):
    conf, correct = _stream(1200, 6, shift=True)
    a = _cascade(tmp_path, "a.sqlite")
    _run(a, conf, correct)
    b = _cascade(tmp_path, "b.sqlite")
    _run(b, conf[:600], correct[:600])
    b.start_recalibration()
    b.close()
    a2 = _cascade(tmp_path, "a2.sqlite")
    _run(a2, conf[:600], correct[:600])
    a2.start_recalibration()
    _run(a2, conf[600:], correct[600:])
    b = _cascade(tmp_path, "b.sqlite")  # reopen: same threshold, sequence, alarm statistic, open window
    assert b.seq == 600 and b.recal_left == 400
    _run(b, conf[600:], correct[600:])
    sa, sb = a2.stats(), b.stats()
    assert sa == sb and sb["n"] == 1200
    assert b._cusum.statistic_ == a2._cusum.statistic_


def test_errors(tmp_path):
    c = _cascade(tmp_path)
    with pytest.raises(ValueError, match="NaN confidence"):
        c.decide(float("nan"), "a", lambda: "a")
    c.close()
    with pytest.raises(ValueError, match="other parameters"):
        _cascade(tmp_path, audit_rate=0.5)
    with pytest.raises(ValueError, match="audit_rate"):
        _cascade(tmp_path, "x.sqlite", audit_rate=0.0)
