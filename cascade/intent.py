"""A small intent classifier over sentence embeddings: the cheap stage that replaces an LLM call.

Failure modes served: Single-LLM Overspend (V) -- intent routing does not need an LLM -- and, as
the cheap stage of :class:`cascade.cascade.Cascade`, Cascade Saturation (X); its max-probability
(or max-logit) score is also the out-of-scope score thresholded in ``ragfix bench thresholds``.
Mechanism: multinomial logistic regression (scikit-learn) on L2-normalised embeddings, with
``predict_proba`` (softmax) and ``decision_function`` (raw logits) exposed separately so the
two score scales can be compared honestly. Takes embeddings, not texts: the embedder is the
caller's choice and its fingerprint goes into :attr:`fingerprint`.

Leaves out: fine-tuning the encoder, an explicit out-of-scope class.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

__all__ = ["EmbeddingIntentClassifier"]


class EmbeddingIntentClassifier:
    """``fit(X (n, d), intents) -> self``; ``predict_proba``, ``decision_function``, ``predict``.

    Args:
        C: inverse L2 regularisation of the logistic regression.
        max_iter: lbfgs iterations.
        embedder_fingerprint: fingerprint of the embedder that produced ``X``; folded into
            :attr:`fingerprint` so a threshold spec can tell two classifiers apart.

    Learned: ``classes_`` (sorted intent names), ``model_`` (the sklearn estimator), ``fingerprint_``.
    """

    def __init__(self, C: float = 10.0, max_iter: int = 300, embedder_fingerprint: str = "") -> None:
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.C, self.max_iter, self.embedder_fingerprint = C, max_iter, embedder_fingerprint

    @staticmethod
    def _check_x(X) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"X must be a non-empty (n, dim) embedding matrix, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("X has NaN or infinite values")
        return x

    def fit(self, X, intents: Sequence[str]) -> "EmbeddingIntentClassifier":
        from sklearn.linear_model import LogisticRegression

        x = self._check_x(X)
        y = np.asarray(intents)
        if y.shape != (x.shape[0],):
            raise ValueError(f"intents must have one label per row of X ({x.shape[0]}), got {y.shape}")
        if len(set(y.tolist())) < 2:
            raise ValueError("intents hold a single class; a classifier needs at least two")
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(x, y)
        self.classes_ = np.asarray(self.model_.classes_)
        h = hashlib.sha256(self.embedder_fingerprint.encode())
        h.update(self.model_.coef_.astype(np.float32).tobytes())
        h.update(self.model_.intercept_.astype(np.float32).tobytes())
        self.fingerprint_ = h.hexdigest()[:16]
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("EmbeddingIntentClassifier is not fitted; call fit(X, intents) first")

    def decision_function(self, X) -> np.ndarray:
        """Raw per-class logits, ``(n, n_classes)``."""
        self._fitted()
        return self.model_.decision_function(self._check_x(X))

    def predict_proba(self, X) -> np.ndarray:
        """Softmax probabilities, ``(n, n_classes)``, columns in ``classes_`` order."""
        self._fitted()
        return self.model_.predict_proba(self._check_x(X))

    def predict(self, X) -> np.ndarray:
        self._fitted()
        return self.classes_[self.decision_function(X).argmax(axis=1)]
