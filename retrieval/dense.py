"""Dense retrieval over a faiss index (exact inner product by default).

Any faiss index-factory string works (``"Flat"``, ``"HNSW32"``, ``"IVF256,Flat"``, ``"IVF256,PQ32"``):
the metric is always inner product, which on normalised vectors is cosine similarity. Indexes that
need training are trained on the corpus vectors themselves.
"""
from __future__ import annotations

import numpy as np

from retrieval.types import SearchResults

__all__ = ["DenseIndex"]


class DenseIndex:
    """``DenseIndex(dim, "Flat").add(emb).search(q, k)`` -> :class:`SearchResults`."""

    def __init__(self, dim: int, factory: str = "Flat", nprobe: int | None = None) -> None:
        import faiss

        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        try:
            self.index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(f"faiss could not build index {factory!r}: {exc}".splitlines()[0]) from None
        self.dim = dim
        self.factory = factory
        self.nprobe = nprobe

    def add(self, embeddings: np.ndarray) -> "DenseIndex":
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"embeddings must have shape (n, {self.dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN or inf; re-encode the corpus")
        if not self.index.is_trained:
            self.index.train(x)
        self.index.add(x)
        if self.nprobe is not None and hasattr(self.index, "nprobe"):
            self.index.nprobe = self.nprobe
        return self

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> SearchResults:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self))
        scores, idx = self.index.search(q, k)
        return SearchResults(idx.astype(np.int64), scores.astype(np.float32))
