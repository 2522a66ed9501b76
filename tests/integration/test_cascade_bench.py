"""``ragfix bench cascade`` on CLINC150 with real classifiers (cached vectors): shift alarms, clean does not.

Cost: the three logistic-regression fits of ``build_stages`` (cheap stage, and the two of the expensive
stage; about 40 s of the test's 52 s on 2 cores) are inputs the test needs but does not test (the fits
are tested in ``tests/unit/test_intent_model.py``; this test is about the audit, the alarm and the
recalibration). ``_CachedFitClassifier`` keeps each fit's learned arrays in a ``warm_cache`` folder named
by a hash of ``FIT_SOURCES`` and the library versions, one entry per exact fit input (the bytes of ``X``,
the labels, ``C``, ``max_iter``, scikit-learn's version), and rebuilds the classifier with
``EmbeddingIntentClassifier.from_arrays`` -- the same arrays, so the same logits, bit for bit (checked
when an entry is written). Everything else -- embeddings, stage scoring, temperature scaling, CPU-cost
measurement, the 7 simulated streams -- runs every time. ``RAGFIX_TEST_COLD=1`` fits from scratch.
"""
import hashlib
import os
import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from cascade.intent import EmbeddingIntentClassifier

pytestmark = pytest.mark.integration

# The code whose output the cached fits are (a change to it starts a fresh cache folder).
FIT_SOURCES = ("cascade/intent.py",)


def _cached_fit_class(folder: Path) -> type:
    """``EmbeddingIntentClassifier`` whose ``fit`` reads its learned arrays from ``folder`` when it has
    fitted exactly this input before, and otherwise fits and stores them."""
    import sklearn

    class _CachedFitClassifier(EmbeddingIntentClassifier):
        def fit(self, X, intents):
            x, y = self._check_x(X), np.asarray(intents)
            h = hashlib.sha256(f"sklearn={sklearn.__version__};C={self.C!r};max_iter={self.max_iter};"
                               f"shape={x.shape};dtype={x.dtype};".encode())
            h.update(np.ascontiguousarray(x).tobytes())
            h.update("\x00".join(map(str, y.tolist())).encode())
            path = folder / f"fit-{h.hexdigest()[:24]}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    fitted = EmbeddingIntentClassifier.from_arrays(z["coef"], z["intercept"], z["classes"], C=self.C,
                                                                   embedder_fingerprint=self.embedder_fingerprint)
                self.model_, self.classes_, self.fingerprint_ = fitted.model_, fitted.classes_, fitted.fingerprint_
                return self
            super().fit(x, y)
            m = self.model_
            again = EmbeddingIntentClassifier.from_arrays(m.coef_, m.intercept_, self.classes_, C=self.C,
                                                          embedder_fingerprint=self.embedder_fingerprint)
            if not np.array_equal(again.decision_function(x), self.decision_function(x)):
                raise AssertionError("from_arrays does not reproduce the fitted logits; the fit cache would be wrong")
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, coef=m.coef_, intercept=m.intercept_, classes=self.classes_)
            tmp.replace(path)
            return self

    return _CachedFitClassifier


def test_cascade_bench_alarms_on_shift_not_on_clean(tmp_path, warm_cache, monkeypatch):
    import bench.benchmarks.bench_cascade as bench_cascade

    monkeypatch.setattr(bench_cascade, "EmbeddingIntentClassifier",
                        _cached_fit_class(warm_cache("cascade-intent-fits", *FIT_SOURCES)))
    out = tmp_path / "cascade.json"
    assert main(["bench", "cascade", "--limit", "2400", "--runs", "3", "--recal-window", "600", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    m = doc["metrics"]
    for key in ("requests_to_alarm", "false_alarm_rate", "escalation_rate_before_shift", "escalation_rate_after_shift",
                "cost_per_1k_before_shift_usd", "cost_per_1k_after_shift_usd"):
        assert key in m
    assert m["requests_to_alarm"] is not None and m["requests_to_alarm"] < 1000
    assert m["requests_to_alarm_runs"]["detected"] >= 2
    assert m["false_alarm_rate"] <= 0.25
    # the failure: the dashboard barely moves while the audited pass-through error leaves its budget
    assert abs(m["escalation_rate_after_shift"] - m["escalation_rate_before_shift"]) < 0.1
    main_run = m["main_run"]
    assert main_run["after_shift"]["audit_passthrough_error_lo"] > m["error_budget"] or \
        main_run["after_shift"]["audit_passthrough_error"] > m["error_budget"]
    recal = main_run["after_recalibration"]
    if recal["true_passthrough_error"] is None:  # nothing passed through: every request escalated
        assert recal["escalation_rate"] == 1.0, recal
    else:
        assert recal["true_passthrough_error"] <= m["error_budget"] + 0.02, recal
    assert m["ece_val"] < m["base_ece_val"]
    assert (tmp_path / "cascade_reliability.png").is_file()
