"""monitor: the shared statistics core -- calibration, two-sample drift tests, sequential alarms.

Used by ``cascade`` (Threshold by Feel III, Cascade Saturation X), by eval drift (I, ``monitor.eval_drift``)
and, later, by distillation drift (IX). numpy, scipy and scikit-learn only; matplotlib only for the
reliability diagram PNG.

Lift-out needs: nothing (copy ``monitor/`` alone; it imports none of the other packages). The
example below runs from such a copy in ``tests/unit/test_liftout.py``.

Example::

    import numpy as np
    from monitor import KSDrift, clopper_pearson

    print(clopper_pearson(7, 10))  # Interval(estimate=0.7, lower=0.3475..., upper=0.9332..., confidence=0.95, n=10)
    rng = np.random.default_rng(0)
    print(KSDrift(rng.normal(size=500)).predict(rng.normal(1.0, size=200)).is_drift)  # True
"""
from monitor.bounds import bootstrap_interval, clopper_pearson
from monitor.calibration import (
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    brier_score,
    expected_calibration_error,
    reliability_curve,
    reliability_diagram,
)
from monitor.drift import KSDrift, MMDDrift, PSIDrift
from monitor.eval_drift import (
    ClassifierDrift,
    ClusterShift,
    EvalEstimate,
    RefreshPlan,
    SequentialDrift,
    grown_clusters,
    importance_weighted_estimate,
    uncovered_mask,
    pick_for_labelling,
    refreshed_estimate,
    weighted_estimate,
    exceedance_p_value,
    cross_fitted_predictions,
    model_assisted_estimate,
    model_assisted_refresh,
)
from monitor.sequential import BernoulliCUSUM, false_alarm_rate
from monitor.types import AlarmResult, DriftResult, Interval

__all__ = [
    "AlarmResult", "DriftResult", "Interval",
    "clopper_pearson", "bootstrap_interval",
    "TemperatureScaling", "PlattScaling", "IsotonicCalibration",
    "expected_calibration_error", "brier_score", "reliability_curve", "reliability_diagram",
    "KSDrift", "MMDDrift", "PSIDrift",
    "BernoulliCUSUM", "false_alarm_rate",
    "ClassifierDrift", "SequentialDrift", "ClusterShift", "grown_clusters", "EvalEstimate", "uncovered_mask",
    "importance_weighted_estimate", "weighted_estimate", "RefreshPlan", "pick_for_labelling", "refreshed_estimate",
    "exceedance_p_value", "cross_fitted_predictions", "model_assisted_estimate", "model_assisted_refresh",
]
