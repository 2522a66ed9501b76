"""Cross-encoder reranking over any sentence-transformers ``CrossEncoder`` (folder or hub id).

This is the plain, correct reranker that every faster variant in this package is checked
against: ``score(query, doc)`` and ``rank(query, docs)``, the two-method contract shared by all
rankers here.

**One score scale: logits.** Every ``score_pairs`` in this package (this reference,
:class:`rerank.RerankEngine` on every backend, the cascade, the micro-batcher, the windowed ranker)
returns the model's raw output for the relevance label, before any activation. sentence-transformers'
``CrossEncoder.predict`` applies the model's own activation by default (a sigmoid for a 1-label head
in 6.x); this class asks it for none. Ranking is invariant to the choice, but score fusion is not (a
sigmoid squeezes the gaps a z-score keeps: the rerank stage measured 0.741 on probabilities against
0.755 on logits, SciFact test), and neither are thresholds, which is failure mode III: derive them
with ``cascade.thresholds`` and guard them with the scorer fingerprint. A caller that wants a
probability applies ``scipy.special.expit`` to the logits itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from retrieval.types import Document

__all__ = ["CrossEncoderReranker", "PairRanker", "RankedResults"]


class RankedResults(NamedTuple):
    """Documents best first, with their scores and their positions in the input list."""

    documents: list[Document]
    scores: np.ndarray
    order: np.ndarray


class PairRanker:
    """The ranker contract on top of ``score_pairs``: subclasses implement only ``score_pairs``.

    ``score_pairs(pairs)`` returns one float32 **logit** per (query, document text) pair, higher =
    more relevant, no sigmoid (the package's one declared score scale); ``score``,
    ``score_documents`` and ``rank`` are built on it.
    """

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, query: str, doc: Document | str) -> float:
        text = doc.full_text() if isinstance(doc, Document) else doc
        return float(self.score_pairs([(query, text)])[0])

    def score_documents(self, query: str, docs: Sequence[Document]) -> np.ndarray:
        """Scores of ``docs`` for ``query`` (default: ``score_pairs`` on each document's title + text)."""
        return self.score_pairs([(query, d.full_text()) for d in docs])

    def rank(self, query: str, docs: Sequence[Document], top_k: int | None = None) -> RankedResults:
        scores = self.score_documents(query, docs)
        order = np.argsort(-scores, kind="stable")[: top_k if top_k is not None else len(docs)]
        return RankedResults([docs[i] for i in order], scores[order], order)


class CrossEncoderReranker(PairRanker):
    """Rerank with a cross-encoder.

    Args:
        model_name_or_path: a CrossEncoder folder (e.g. ``models/reranker-minilm-l6``), a hub id, or an
            already loaded ``sentence_transformers.CrossEncoder`` (used as it is; ``device`` is then ignored).
        max_length: tokens per (query, document) pair; longer pairs are truncated (counted in ``truncated_``).
        batch_size: pairs per forward pass.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, model_name_or_path: "str | Path | Any", name: str | None = None, max_length: int | None = None,
                 batch_size: int = 32, device: str = "auto") -> None:
        import torch
        from sentence_transformers import CrossEncoder

        import rerank.meanpool  # noqa: F401  (registers the 2-layer stage's mean-pool model type)

        if isinstance(model_name_or_path, CrossEncoder):
            self.model = model_name_or_path
            if max_length is not None:
                self.model.max_length = max_length
            path = getattr(self.model.model.config, "_name_or_path", "cross-encoder")
        elif isinstance(model_name_or_path, (str, Path)):
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self.model = CrossEncoder(str(model_name_or_path), device=device, max_length=max_length)
            path = model_name_or_path
        else:
            raise TypeError("CrossEncoderReranker: model_name_or_path must be a folder, a hub id or a "
                            f"sentence_transformers.CrossEncoder, got {type(model_name_or_path).__name__}")
        self.name = name or Path(str(path)).name
        self.batch_size = batch_size
        self.max_length = int(self.model.max_length)
        self.truncated_ = 0
        self.pairs_scored_ = 0

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if len(pairs) == 0:
            return np.zeros(0, dtype=np.float32)
        for i, (q, d) in enumerate(pairs):
            if not isinstance(q, str) or not isinstance(d, str):
                raise TypeError(f"pair {i}: query and document must be str, got ({type(q).__name__}, {type(d).__name__})")
        tok = self.model.tokenizer
        lengths = tok([q for q, _ in pairs], [d for _, d in pairs], truncation=False, add_special_tokens=True,
                      return_length=True, verbose=False)["length"]
        self.truncated_ += int(sum(1 for n in lengths if n > self.max_length))
        import torch

        # Logits, the package's one score scale: no activation (predict would apply the head's sigmoid).
        scores = self.model.predict(list(pairs), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False,
                                    activation_fn=torch.nn.Identity())
        scores = np.asarray(scores, dtype=np.float32).reshape(len(pairs), -1)[:, 0]
        if not np.isfinite(scores).all():
            raise FloatingPointError(f"{self.name}: non-finite scores for {int((~np.isfinite(scores)).sum())} pairs")
        self.pairs_scored_ += len(pairs)
        return scores
