"""The rerank stage as shipped and as measured: cross-encoder logit fused with the first stage's scores.

Failure mode VIII/V. A small cross-encoder trained on little data ranks the hybrid top 100 *below*
the hybrid itself (SciFact test: 0.689 against 0.715 nDCG@10), yet it carries a signal the first
stage lacks. :class:`FusedRerankStage` scores the candidates with the ranker (logits, the one
score scale of :mod:`rerank`) and fuses that with each first-stage signal the candidates came with
(BM25 and dense scores from ``retrieval.HybridRetriever.search_with_signals``) by a fixed
:class:`FusionRule`:

- ``zsum`` (the default, the measured stage): CombSUM of per-query z-scores, Fox & Shaw 1994; Lee,
  SIGIR 1997 (:func:`rerank.fusion.zsum_scores`). For each signal ``s`` over the query's ``n``
  candidates, ``z_s = (s - mean(s)) / std(s)`` (population std, over the candidates the signal
  retrieved; a candidate it did not retrieve, ``-inf``, gets ``min(z_s) - 1``; a constant signal
  contributes 0), and ``fused = sum_s w_s * z_s``. Weights: all 1 (``ce``, ``bm25``, ``dense``),
  fixed up front, not tuned.
- ``rrf``: reciprocal-rank fusion of the same signals (``sum_s w_s / (60 + rank_s)``), the stage's
  first design, kept for the ablation.

Measured: ``ragfix train eval-reranker --model reranker-l6 --depth 100`` reports this object's
ranking as ``specialist`` (0.7549 nDCG@10 over the 300 SciFact test queries, against 0.737 for the
same fusion without the cross-encoder, ``fusion_no_ce``); ``pipeline.Pipeline`` and ``ragfix demo``
run the same object by default, and ``tests/integration/test_stage_equals_eval.py`` checks that
the two rankings are identical.

Left out: learned weights (they need held-out queries the cross-encoder never trained on), and
any signal the first stage did not return: with a BM25-only first stage the stage fuses ``ce``
with ``bm25`` alone, which is not the configuration measured above.

Example::

    >>> stage = FusedRerankStage(CrossEncoderReranker("models/reranker-minilm-l6"))   # doctest: +SKIP
    >>> res = HybridRetriever([BM25Retriever(), DenseRetriever(emb)], names=("bm25", "dense")).index(docs)  # doctest: +SKIP
    >>> hits = res.search_with_signals([q], 100)                                         # doctest: +SKIP
    >>> cands = [docs[j] for j in hits.indices[0] if j >= 0]                            # doctest: +SKIP
    >>> stage.rank(q, cands, {n: s[0][: len(cands)] for n, s in hits.signals.items()}).documents[:10]  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from rerank.cross_encoder import PairRanker
from rerank.fusion import rrf_scores, zsum_scores
from retrieval.types import Document

__all__ = ["FUSIONS", "CE_SIGNAL", "FusionRule", "FusedRanking", "FusedRerankStage"]

FUSIONS = ("zsum", "rrf")
CE_SIGNAL = "ce"  # the ranker's logit among the fused signals


@dataclass(frozen=True)
class FusionRule:
    """How the signals are combined: ``method`` (one of :data:`FUSIONS`), per-signal ``weights``
    (a signal not named weighs 1; a weight of 0 removes a signal: the ablations), ``rrf_k`` (rrf only).

    The default, ``FusionRule()``, is the measured stage: z-score CombSUM, every weight 1.
    """

    method: str = "zsum"
    weights: Mapping[str, float] = field(default_factory=dict)
    rrf_k: float = 60.0

    def __post_init__(self) -> None:
        if self.method not in FUSIONS:
            raise ValueError(f"FusionRule: method must be one of {', '.join(FUSIONS)}, got {self.method!r}")
        if not self.rrf_k > 0:
            raise ValueError(f"FusionRule: rrf_k must be > 0, got {self.rrf_k}")
        for name, w in dict(self.weights).items():
            if not np.isfinite(w) or w < 0:
                raise ValueError(f"FusionRule: weight of {name!r} must be finite and >= 0, got {w}")
        object.__setattr__(self, "weights", dict(self.weights))

    def __call__(self, signals: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fused score per candidate (higher is better); a weight naming an absent signal is refused."""
        if self.method == "zsum":
            return zsum_scores(signals, self.weights or None)
        return rrf_scores(signals, self.weights or None, k=self.rrf_k)

    def describe(self) -> str:
        w = ", ".join(f"{k}={v:g}" for k, v in sorted(self.weights.items())) or "all 1"
        what = "sum of per-query z-scores" if self.method == "zsum" else f"RRF k={self.rrf_k:g}"
        return f"{what}, weights {w}"


class FusedRanking(NamedTuple):
    """Candidates best first by the fused score, with their positions in the input and every signal.

    documents, scores, order: as :class:`rerank.RankedResults` (``scores`` are the fused ones).
    signals: name -> scores over the *input* candidates, in input order (``ce`` holds the logits).
    """

    documents: list[Document]
    scores: np.ndarray
    order: np.ndarray
    signals: dict[str, np.ndarray]


class FusedRerankStage:
    """``FusedRerankStage(ranker, rule=FusionRule()).rank(query, docs, first_stage, top_k=None)``.

    Args:
        ranker: any :class:`rerank.PairRanker` (its ``score_documents`` must return logits: the
            fp32 :class:`rerank.CrossEncoderReranker` is the measured one, a
            :class:`rerank.RerankEngine` on a faster backend is a drop-in whose ranking agreement is tested).
        rule: the :class:`FusionRule` (default: the measured z-score CombSUM, equal weights).
        name: shown in reports.

    Raises ``ValueError`` when a first-stage signal has the wrong length, is named ``ce``, or the
    rule weighs a signal that is absent.
    """

    def __init__(self, ranker: PairRanker, rule: FusionRule | None = None, name: str = "fused") -> None:
        if not hasattr(ranker, "score_documents") and not hasattr(ranker, "score_pairs"):
            raise TypeError(f"FusedRerankStage: ranker must have score_documents or score_pairs (a rerank.PairRanker), "
                            f"got {type(ranker).__name__}")
        self.ranker = ranker
        self.rule = rule if rule is not None else FusionRule()
        self.name = name

    def fuse(self, ce_logits: np.ndarray, first_stage: Mapping[str, np.ndarray]) -> np.ndarray:
        """Fused score per candidate from the ranker's logits and the first-stage signals (same candidates).

        The pure half of :meth:`rank`: the evaluation calls it on cached logits.
        """
        ce = np.asarray(ce_logits, dtype=np.float64)
        if ce.ndim != 1:
            raise ValueError(f"FusedRerankStage: ce_logits must be 1-D (one query's candidates), got shape {ce.shape}")
        if CE_SIGNAL in first_stage:
            raise ValueError(f"FusedRerankStage: first-stage signal named {CE_SIGNAL!r} clashes with the ranker's logit; rename it")
        signals = {CE_SIGNAL: ce}
        for name, s in first_stage.items():
            s = np.asarray(s, dtype=np.float64)
            if s.shape != ce.shape:
                raise ValueError(f"FusedRerankStage: first-stage signal {name!r} has shape {s.shape}, "
                                 f"the candidates {ce.shape}; pass one score per candidate (-inf: not retrieved)")
            signals[name] = s
        return self.rule(signals)

    def score_documents(self, query: str, docs: Sequence[Document]) -> np.ndarray:
        """The ranker's logits for ``docs``."""
        if hasattr(self.ranker, "score_documents"):
            return np.asarray(self.ranker.score_documents(query, docs), dtype=np.float64)
        return np.asarray(self.ranker.score_pairs([(query, d.full_text()) for d in docs]), dtype=np.float64)

    def rank(self, query: str, docs: Sequence[Document], first_stage: Mapping[str, np.ndarray],
             top_k: int | None = None) -> FusedRanking:
        """Score ``docs`` with the ranker, fuse with ``first_stage`` (name -> one score per doc), best first."""
        docs = list(docs)
        if not docs:
            return FusedRanking([], np.zeros(0), np.zeros(0, dtype=np.int64), {})
        ce = self.score_documents(query, docs)
        fused = self.fuse(ce, first_stage)
        # Ties (rare with float z-sums) keep the first stage's order.
        order = np.argsort(-fused, kind="stable")[: top_k if top_k is not None else len(docs)]
        signals = {CE_SIGNAL: ce, **{k: np.asarray(v, dtype=np.float64) for k, v in first_stage.items()}}
        return FusedRanking([docs[i] for i in order], fused[order], order, signals)
