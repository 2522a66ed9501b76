"""cascade: cheap -> expensive decisions that stay honest.

* :mod:`cascade.thresholds` -- Threshold by Feel (III): thresholds from targets with bounds,
  versioned specs, and a guard that refuses a swapped scorer.
* :mod:`cascade.cascade` -- Cascade Saturation (X): audited, alarmed, recalibrating cascade with
  its state in SQLite.
* :mod:`cascade.intent` -- the small embedding intent classifier used as a cheap stage.

Lift-out needs: monitor, rerank, retrieval (``rerank`` for ``rerank.train.TrainPair`` in the
faithfulness pair builder, which brings ``retrieval``). Never bench, registry or data: embedders
and models are passed in. ``tests/unit/test_liftout.py`` runs the example below from such a copy.

Example (a threshold from a recall target)::

    from cascade import derive_threshold

    scores, labels = [0.9, 0.8, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0]
    print(derive_threshold(scores, labels, "recall", 0.6, bound="point"))  # 0.8
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
