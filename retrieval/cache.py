"""On-disk cache of corpus embeddings, keyed by model fingerprint and corpus hash.

Encoding SciFact's 5,183 abstracts takes about a minute with MiniLM on 2 cores and several with
e5-small; every benchmark and the demo re-use the same matrices. The key covers the exact
weights (fingerprint) and the exact texts (sha256 over ids and texts), so a changed model or
corpus can never hit a stale entry. Writes go to a temporary file and are renamed into place, so
a killed process leaves no half-written matrix behind.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["EmbeddingCache", "corpus_hash", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$RAGFIX_CACHE``, else ``~/.cache/ragfix``."""
    return Path(os.environ.get("RAGFIX_CACHE") or Path.home() / ".cache" / "ragfix")


def corpus_hash(ids: Sequence[str], texts: Sequence[str]) -> str:
    """sha256 (16 hex chars) over the ordered (id, text) pairs."""
    h = hashlib.sha256()
    for i, t in zip(ids, texts, strict=True):
        h.update(i.encode())
        h.update(b"\x00")
        h.update(t.encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


class EmbeddingCache:
    """``get_or_compute(fingerprint, ids, texts, encode)`` returns the (n, dim) float32 matrix."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir() / "embeddings"

    def path_for(self, fingerprint: str, chash: str) -> Path:
        return self.directory / f"{fingerprint}-{chash}.npy"

    def get_or_compute(
        self,
        fingerprint: str,
        ids: Sequence[str],
        texts: Sequence[str],
        encode: Callable[[Sequence[str]], np.ndarray],
        refresh: bool = False,
    ) -> np.ndarray:
        """The cached matrix, else ``encode(texts)`` stored and returned; ``refresh=True`` always
        recomputes and overwrites the entry (``ragfix index --compare-local`` measures a real run)."""
        path = self.path_for(fingerprint, corpus_hash(ids, texts))
        if path.is_file() and not refresh:
            try:
                emb = np.load(path, allow_pickle=False)
                if emb.shape[0] == len(texts):
                    return emb
            except (OSError, ValueError):
                pass  # unreadable entry: recompute and overwrite it
        emb = np.ascontiguousarray(encode(texts), dtype=np.float32)
        if emb.shape[0] != len(texts):
            raise ValueError(f"encoder returned {emb.shape[0]} rows for {len(texts)} texts")
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".npy.tmp")
        try:
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(fd, 0o666 & ~mask)  # mkstemp makes 0600; give the user's usual mode
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, emb, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return emb
