"""Small value types shared by the retrieval stage and everything downstream of it."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Document", "SearchResults", "HybridResults"]


class Document(NamedTuple):
    """One retrievable unit: a stable id, an optional title and the text."""

    id: str
    text: str
    title: str = ""

    def full_text(self) -> str:
        """Title and text joined as BEIR evaluations do ("title. text" -> "title text")."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


class SearchResults(NamedTuple):
    """Top-k results for a batch of queries, best first.

    indices: (n_queries, k) int64 positions into the indexed corpus (-1 where fewer than k exist)
    scores:  (n_queries, k) float32, higher is better
    """

    indices: np.ndarray
    scores: np.ndarray


class HybridResults(NamedTuple):
    """A fused first-stage ranking that keeps each component's own score per candidate.

    indices, scores: as :class:`SearchResults` (scores are the fusion's, e.g. RRF).
    signals: component name -> (n_queries, k) float64, that component's score for the candidate in
        the same cell of ``indices``; ``-inf`` where the component did not retrieve it within its
        search depth (or where ``indices`` is -1). This is what a score-level rerank stage
        (``rerank.stage.FusedRerankStage``) fuses with the cross-encoder's logit.
    """

    indices: np.ndarray
    scores: np.ndarray
    signals: dict[str, np.ndarray]
