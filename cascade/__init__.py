"""cascade: cheap -> expensive decisions that stay honest.

* :mod:`cascade.thresholds` -- Threshold by Feel (III): thresholds from targets with bounds,
  versioned specs, and a guard that refuses a swapped scorer.
* :mod:`cascade.cascade` -- Cascade Saturation (X): audited, alarmed, recalibrating cascade with
  its state in SQLite.
* :mod:`cascade.intent` -- the small embedding intent classifier used as a cheap stage.
"""
from cascade.cascade import ROUTES, Cascade, Decision
from cascade.intent import EmbeddingIntentClassifier
from cascade.thresholds import (
    DIRECTIONS,
    METRICS,
    SPEC_FORMAT,
    ScorerMismatchError,
    SpecFormatError,
    ThresholdGuard,
    ThresholdSpec,
    UnattainableTargetError,
    achieved,
    data_hash,
    derive_cost_threshold,
    derive_threshold,
)

__all__ = [
    "Cascade", "Decision", "ROUTES", "EmbeddingIntentClassifier",
    "DIRECTIONS", "METRICS", "SPEC_FORMAT", "ScorerMismatchError", "SpecFormatError", "ThresholdGuard",
    "ThresholdSpec", "UnattainableTargetError", "achieved", "data_hash", "derive_cost_threshold", "derive_threshold",
]
