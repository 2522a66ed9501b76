"""Small value types shared by the retrieval stage and everything downstream of it."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Document", "SearchResults"]


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
