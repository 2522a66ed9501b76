"""A distilled relevance judge: logistic regression on embedding features, trained on a teacher's verdicts.

Part of Distillation Drift (IX). The teacher (an LLM judge or the 6-layer cross-encoder) is slow;
the student answers the same yes/no from two sentence embeddings it needs anyway (the dense
retriever computes them): features ``[q * d, |q - d|, cos(q, d)]`` (``2 * dim + 1``), a
class-balanced-free L2 logistic regression (scikit-learn for ``fit``; ``predict`` is numpy only).
Its training set is the teacher's cached verdicts (:class:`distill.judge_cache.JudgeCache`), never
gold labels: agreement with the teacher is what it is fitted and measured on.

``save(folder)`` / ``load(folder)`` round-trip exactly (``student.npz`` + ``student.json`` with a
format version that ``load`` checks). Failure modes: mismatched shapes or labels other than 0/1 raise
ValueError naming the argument; ``fit`` with one class only raises (a student that always answers
the same is not a judge).

Leaves out: fine-tuning the embedder, probability calibration, multi-class verdicts.

Example::

    st = EmbeddingPairStudent(embedder_name="minilm").fit(q_emb, d_emb, teacher_labels)
    agree = (st.predict(q_emb2, d_emb2) == teacher_labels2).mean()
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingPairStudent", "FeatureStudent", "pair_features", "score_features", "STUDENT_FORMAT_VERSION"]

STUDENT_FORMAT_VERSION = 1


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def pair_features(q_emb: np.ndarray, d_emb: np.ndarray) -> np.ndarray:
    """``(n, 2 * dim + 1)`` features of ``n`` (query, document) embedding rows: ``[q * d, |q - d|, cos]``."""
    q, d = np.asarray(q_emb, dtype=np.float64), np.asarray(d_emb, dtype=np.float64)
    if q.ndim != 2 or q.shape != d.shape:
        raise ValueError(f"q_emb and d_emb must be 2-D of one shape (n, dim), got {q.shape} and {d.shape}")
    q, d = _unit(q), _unit(d)
    return np.hstack([q * d, np.abs(q - d), (q * d).sum(axis=1, keepdims=True)])


def score_features(scores: np.ndarray, queries, docs) -> np.ndarray:
    """``(n, 3)`` features from a cheap scorer: ``[logit(score), query-word overlap share, log(document words)]``.

    ``scores`` are a small cross-encoder's sigmoid outputs (e.g. ``reranker-l2``); the overlap and
    length terms let the logistic regression move the cheap model's threshold where its scale differs
    from the teacher's (the part of the disagreement a shift changes most).
    """
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6)
    if s.shape != (len(queries),) or len(queries) != len(docs):
        raise ValueError(f"scores, queries and docs must have one length, got {s.shape}, {len(queries)}, {len(docs)}")
    ov, ln = [], []
    for q, d in zip(queries, docs):
        qw, dw = set(q.lower().split()), d.lower().split()
        ov.append(len(qw & set(dw)) / max(1, len(qw)))
        ln.append(np.log1p(len(dw)))
    return np.column_stack([np.log(s / (1 - s)), ov, ln])


class FeatureStudent:
    """``fit(X, teacher_labels) -> self``; ``predict(X) -> 0/1``: L2 logistic regression on any feature matrix.

    The distilled judge when a cheap scorer already exists (features from :func:`score_features`).
    Learned ``coef_``, ``intercept_``; ``save`` / ``load`` as :class:`EmbeddingPairStudent`.
    """

    kind = "feature-logreg"

    def __init__(self, C: float = 1.0, features: str = "", threshold: float = 0.5) -> None:
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.C, self.features, self.threshold = float(C), features, float(threshold)

    def fit(self, X: np.ndarray, labels) -> "FeatureStudent":
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(labels)
        if X.ndim != 2 or y.shape != (X.shape[0],) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"need X of shape (n, f) and n teacher verdicts of 0/1, got {X.shape} and {y.shape}")
        if len(np.unique(y)) < 2:
            raise ValueError(f"the teacher's verdicts are all {int(y[0])} on these {len(y)} pairs; a student needs both "
                             "verdicts to learn from (use more pairs or another threshold)")
        self.mean_, self.scale_ = X.mean(axis=0), np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        lr = LogisticRegression(C=self.C, max_iter=2000).fit((X - self.mean_) / self.scale_, y.astype(int))
        self.coef_, self.intercept_, self.n_train_ = lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), int(len(y))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError("FeatureStudent.predict before fit (or load)")
        z = ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) > self.threshold).astype(int)

    def save(self, folder: Path | str) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "student.npz", coef=self.coef_, intercept=np.array([self.intercept_]), mean=self.mean_,
                 scale=self.scale_)
        (folder / "student.json").write_text(json.dumps({
            "format_version": STUDENT_FORMAT_VERSION, "kind": self.kind, "C": self.C, "features": self.features,
            "threshold": self.threshold, "n_train": self.n_train_}, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> "FeatureStudent":
        folder = Path(folder)
        meta_p = folder / "student.json"
        if not meta_p.is_file():
            raise FileNotFoundError(f"{meta_p}: no student here (write one with FeatureStudent.save)")
        meta = json.loads(meta_p.read_text())
        if meta.get("format_version") != STUDENT_FORMAT_VERSION or meta.get("kind") != cls.kind:
            raise ValueError(f"{meta_p}: format_version {meta.get('format_version')} kind {meta.get('kind')!r}, this code "
                             f"reads {STUDENT_FORMAT_VERSION} {cls.kind!r}")
        st = cls(meta["C"], meta["features"], meta["threshold"])
        z = np.load(folder / "student.npz")
        st.coef_, st.intercept_, st.mean_, st.scale_ = z["coef"], float(z["intercept"][0]), z["mean"], z["scale"]
        st.n_train_ = int(meta["n_train"])
        return st


class EmbeddingPairStudent:
    """``fit(q_emb, d_emb, teacher_labels) -> self``; ``predict(q_emb, d_emb) -> 0/1``; learned ``coef_``, ``intercept_``.

    Args:
        C: inverse L2 strength of the logistic regression.
        embedder_name: the embedder the features come from (saved; ``load`` callers must embed with it).
    """

    def __init__(self, C: float = 1.0, embedder_name: str = "", threshold: float = 0.5) -> None:
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.C, self.embedder_name, self.threshold = float(C), embedder_name, float(threshold)

    def fit(self, q_emb: np.ndarray, d_emb: np.ndarray, labels) -> "EmbeddingPairStudent":
        from sklearn.linear_model import LogisticRegression

        X = pair_features(q_emb, d_emb)
        y = np.asarray(labels)
        if y.shape != (X.shape[0],) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"labels must be {X.shape[0]} teacher verdicts of 0/1, got shape {y.shape}")
        if len(np.unique(y)) < 2:
            raise ValueError(f"the teacher's verdicts are all {int(y[0])} on these {len(y)} pairs; a student needs both "
                             "verdicts to learn from (use more pairs or another threshold)")
        lr = LogisticRegression(C=self.C, max_iter=2000).fit(X, y.astype(int))
        self.coef_ = lr.coef_[0].astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])
        self.n_train_ = int(len(y))
        return self

    def predict_proba(self, q_emb: np.ndarray, d_emb: np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise RuntimeError("EmbeddingPairStudent.predict before fit (or load)")
        z = pair_features(q_emb, d_emb) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, q_emb: np.ndarray, d_emb: np.ndarray) -> np.ndarray:
        return (self.predict_proba(q_emb, d_emb) > self.threshold).astype(int)

    def save(self, folder: Path | str) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "student.npz", coef=self.coef_, intercept=np.array([self.intercept_]))
        (folder / "student.json").write_text(json.dumps({
            "format_version": STUDENT_FORMAT_VERSION, "kind": "embedding-pair-logreg", "C": self.C,
            "embedder": self.embedder_name, "threshold": self.threshold, "n_train": self.n_train_}, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> "EmbeddingPairStudent":
        folder = Path(folder)
        meta_p = folder / "student.json"
        if not meta_p.is_file():
            raise FileNotFoundError(f"{meta_p}: no student here (write one with EmbeddingPairStudent.save)")
        meta = json.loads(meta_p.read_text())
        if meta.get("format_version") != STUDENT_FORMAT_VERSION:
            raise ValueError(f"{meta_p}: format_version {meta.get('format_version')}, this code reads {STUDENT_FORMAT_VERSION}")
        st = cls(meta["C"], meta["embedder"], meta["threshold"])
        z = np.load(folder / "student.npz")
        st.coef_, st.intercept_, st.n_train_ = z["coef"], float(z["intercept"][0]), int(meta["n_train"])
        return st
