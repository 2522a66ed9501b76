"""Lexical-support faithfulness specialist: is every content word of an answer backed by the evidence?

Failure modes served: Right Doc, Wrong Answer (II) -- the answer states what its passage does not --
and Single-LLM Overspend (V) -- that check needs no LLM call. An answer is scored from eleven
features of (evidence, question, answer) that say how much of the answer the evidence covers, and
what the answer adds that neither the evidence nor the question holds:

- ``in_evidence``, ``in_question``: share of the answer's content words found in each;
- ``novel``, ``novel_share``: content words in neither (the hallucination signal);
- ``names_in_evidence``, ``n_names``: share of capitalised words and numbers found in the evidence;
- ``exact``: the whole answer appears verbatim in the evidence;
- ``longest_span_share``, ``longest_span``: the longest run of answer tokens copied from the evidence;
- ``bigrams_in_evidence``: share of answer bigrams found in the evidence;
- ``log_words``: answer length (kept so the model can discount it; evaluation is length-matched).

A logistic regression over standardised features (scikit-learn) maps them to P(supported). The
model is a JSON file of feature names, means, scales and coefficients -- readable, diffable, and
loadable without pickle. Measured (``ragfix train faithfulness``, card in
``models/faithfulness-lexical/MODEL_CARD.md``): balanced accuracy on the held-out, length-matched
HaluEval QA split against a length-only baseline at 0.5. The question matters: without it, words
the answer repeats from the question look unsupported or supported by accident and accuracy falls
(measured in the card).

Leaves out: paraphrase (a supported answer in other words scores low; the cross-encoder recipe in
:mod:`cascade.faithfulness` is the route there), negation and contradiction inside copied spans,
evidence beyond ``max_words`` words (truncated, counted in ``n_truncated_``).

Example::

    s = LexicalFaithfulnessScorer.load("models/faithfulness-lexical")
    s.score("Paris is the capital of France.", "Paris", question="What is the capital of France?")
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["FEATURES", "support_features", "content_words", "LexicalFaithfulnessScorer", "FORMAT"]

FORMAT = "ragfix-lexical-faithfulness/1"
FEATURES = ("in_evidence", "in_question", "novel", "novel_share", "names_in_evidence", "n_names", "exact",
            "longest_span_share", "longest_span", "bigrams_in_evidence", "log_words")
_STOP = frozenset(
    "the a an of in on at to for and or is was are were be been by with as from that this it its his her their "
    "which who whom what when where how did does do he she they them there than then also has have had".split())
_WORD = re.compile(r"\w+")
_NAME = re.compile(r"\b[A-Z][\w'-]*|\b\d[\d,.]*")
_MAX_SPAN_TOKENS = 60  # the longest-span search is quadratic in answer length; long answers are cut


def _toks(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
    """Lower-cased word tokens of ``text`` without stop words."""
    return {t for t in _toks(text) if t not in _STOP}


def support_features(evidence: str, answer: str, question: str = "") -> list[float]:
    """The :data:`FEATURES` of one (evidence, answer[, question]) triple, in that order."""
    ev_toks = _toks(evidence)
    ev, q, a = set(ev_toks), set(_toks(question)), _toks(answer)
    content = [t for t in a if t not in _STOP] or a or [""]
    n = len(content)
    novel = sum(t not in ev and t not in q for t in content)
    names = [m.lower().rstrip(".,") for m in _NAME.findall(answer)]
    names_in = sum(m in ev or m in evidence.lower() for m in names) / len(names) if names else 1.0
    flat = " ".join(ev_toks)
    exact = float(bool(a) and f" {' '.join(a)} " in f" {flat} ")
    cut = a[:_MAX_SPAN_TOKENS]
    best = 0
    for i in range(len(cut)):
        for j in range(len(cut), i + best, -1):
            if f" {' '.join(cut[i:j])} " in f" {flat} ":
                best = j - i
                break
    bigrams = list(zip(a, a[1:]))
    ev_bigrams = set(zip(ev_toks, ev_toks[1:]))
    bi = sum(b in ev_bigrams for b in bigrams) / len(bigrams) if bigrams else exact
    return [sum(t in ev for t in content) / n, sum(t in q for t in content) / n, float(novel), novel / n,
            names_in, float(len(names)), exact, best / max(1, len(cut)), float(best), bi, float(np.log1p(len(a)))]


def _check(name: str, values: Sequence, allow_empty: bool = False) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"LexicalFaithfulnessScorer: {name}[{i}] must be str, got {type(v).__name__}")
        if not allow_empty and not v.strip():
            raise ValueError(f"LexicalFaithfulnessScorer: {name}[{i}] is empty; an empty {name} cannot be scored")
        out.append(v)
    return out


class LexicalFaithfulnessScorer:
    """``predict_proba(evidences, claims, questions=None) -> (n,)`` P(supported); ``score`` for one pair.

    Args:
        coef, intercept, mean, scale: the logistic regression over standardised :data:`FEATURES`.
        threshold: ``predict`` returns ``proba >= threshold``.
        max_words: evidence longer than this is cut to its first ``max_words`` words (counted in
            ``n_truncated_``), which bounds the cost of one call.
    """

    def __init__(self, coef: Sequence[float], intercept: float, mean: Sequence[float], scale: Sequence[float],
                 threshold: float = 0.5, max_words: int = 2000, meta: dict | None = None) -> None:
        if not (len(coef) == len(mean) == len(scale) == len(FEATURES)):
            raise ValueError(f"LexicalFaithfulnessScorer: expected {len(FEATURES)} coefficients, means and scales "
                             f"({', '.join(FEATURES)}), got {len(coef)}, {len(mean)}, {len(scale)}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.coef, self.mean = np.asarray(coef, float), np.asarray(mean, float)
        self.scale = np.where(np.asarray(scale, float) > 0, np.asarray(scale, float), 1.0)
        self.intercept, self.threshold, self.max_words = float(intercept), threshold, max_words
        self.meta = dict(meta or {})
        self.n_scored_ = 0
        self.n_truncated_ = 0

    # -------------------------------------------------------------- fitting and storage
    @classmethod
    def fit(cls, evidences: Sequence[str], claims: Sequence[str], labels: Sequence[int],
            questions: Sequence[str] | None = None, c: float = 1.0, **kwargs) -> "LexicalFaithfulnessScorer":
        """Fit the logistic regression (scikit-learn, L2, ``C=c``) on labelled triples; 1 = supported."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels).astype(int)
        if set(np.unique(y)) != {0, 1}:
            raise ValueError("LexicalFaithfulnessScorer.fit: labels must hold both 0 (hallucinated) and 1 (supported)")
        x = cls._features(evidences, claims, questions)
        mean, scale = x.mean(0), x.std(0)
        scale[scale == 0] = 1.0
        lr = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / scale, y)
        return cls(lr.coef_[0].tolist(), float(lr.intercept_[0]), mean.tolist(), scale.tolist(), **kwargs)

    def save(self, folder: Path | str) -> Path:
        """Write ``model.json`` (atomically) into ``folder``; returns its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        body = {"format": FORMAT, "features": list(FEATURES), "coef": self.coef.tolist(), "intercept": self.intercept,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "threshold": self.threshold,
                "max_words": self.max_words, "meta": self.meta}
        tmp = folder / "model.json.tmp"
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        tmp.replace(folder / "model.json")
        return folder / "model.json"

    @classmethod
    def load(cls, folder: Path | str) -> "LexicalFaithfulnessScorer":
        """Read ``folder/model.json``; refuses files of another format or feature set."""
        path = Path(folder) / "model.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: train it with `ragfix train faithfulness --out {folder}`")
        try:
            text = path.read_bytes().decode("utf-8-sig")
            body = json.loads(text)
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise ValueError(f"{path}:{line}: not UTF-8; re-train with `ragfix train faithfulness`") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); re-train with `ragfix train faithfulness`") from None
        if not isinstance(body, dict):
            raise ValueError(f"{path}:1: expected a JSON object, got {type(body).__name__}; re-train with `ragfix train faithfulness`")
        if body.get("format") != FORMAT or tuple(body.get("features", ())) != FEATURES:
            raise ValueError(f"{path}:1: format {body.get('format')!r} with features {body.get('features')}; this code reads "
                             f"{FORMAT} with {list(FEATURES)}; re-train with `ragfix train faithfulness`")
        def _at(key: str) -> str:  # file:line of the key's first occurrence (line 1 when absent)
            i = text.find(f'"{key}"')
            return f"{path}:{text.count(chr(10), 0, i) + 1 if i >= 0 else 1}"

        def _numbers(key: str, n: int | None) -> list[float] | float:
            v = body.get(key)
            vals = v if n is not None else [v]
            ok = isinstance(vals, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                                for x in vals) and (n is None or len(vals) == n)
            if not ok:
                want = f"a list of {n} finite numbers" if n is not None else "a finite number"
                raise ValueError(f"{_at(key)}: field {key!r} must be {want}, got {str(v)[:80]}; the file is damaged: "
                                 "re-train with `ragfix train faithfulness`")
            return vals if n is not None else vals[0]

        n = len(FEATURES)
        coef, mean, scale = _numbers("coef", n), _numbers("mean", n), _numbers("scale", n)
        intercept, threshold = _numbers("intercept", None), _numbers("threshold", None)
        max_words = body.get("max_words")
        if not isinstance(max_words, int) or isinstance(max_words, bool) or max_words < 1:
            raise ValueError(f"{_at('max_words')}: field 'max_words' must be a positive integer, got {max_words!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"{_at('threshold')}: field 'threshold' must be in (0, 1), got {threshold}")
        meta = body.get("meta")
        return cls(coef, intercept, mean, scale, threshold=threshold, max_words=max_words,
                   meta=meta if isinstance(meta, dict) else None)

    # -------------------------------------------------------------- scoring
    @staticmethod
    def _features(evidences, claims, questions) -> np.ndarray:
        ev, cl = _check("evidence", evidences), _check("claim", claims)
        qs = _check("question", questions, allow_empty=True) if questions is not None else [""] * len(ev)
        if not len(ev) == len(cl) == len(qs):
            raise ValueError(f"LexicalFaithfulnessScorer: got {len(ev)} evidences, {len(cl)} claims and {len(qs)} "
                             "questions; pass one of each per item")
        return np.array([support_features(e, c, q) for e, c, q in zip(ev, cl, qs)], dtype=float).reshape(len(ev), len(FEATURES))

    def predict_proba(self, evidences: Sequence[str], claims: Sequence[str],
                      questions: Sequence[str] | None = None) -> np.ndarray:
        """P(supported) per item, shape ``(n,)``; ``questions`` (optional) are the questions the claims answer."""
        ev = list(evidences)
        for i, e in enumerate(ev):
            if isinstance(e, str):
                words = e.split()
                if len(words) > self.max_words:
                    ev[i] = " ".join(words[: self.max_words])
                    self.n_truncated_ += 1
        x = self._features(ev, claims, questions)
        self.n_scored_ += len(x)
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def predict(self, evidences: Sequence[str], claims: Sequence[str], questions: Sequence[str] | None = None) -> np.ndarray:
        return (self.predict_proba(evidences, claims, questions) >= self.threshold).astype(int)

    def score(self, evidence: str, claim: str, question: str = "") -> float:
        return float(self.predict_proba([evidence], [claim], [question])[0])
