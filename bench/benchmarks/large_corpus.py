"""The largest real corpus available here: SciFact abstracts + NQ-open gold passages + HotpotQA
knowledge passages (HaluEval QA), each part encoded through the embedding cache on its own.

Each part keeps the ids and texts the rest of the project uses for it (SciFact as
``DenseRetriever`` indexes it: ``doc.id`` and ``doc.full_text()``; HotpotQA as
``bench.probes.probe_fusion``: ``hotpotqa:{i}`` and the passage text), so a part already encoded by
another benchmark is a cache hit, and a part encoded here is one for them. NQ-open gold passages are
deduplicated by text (the same Wikipedia paragraph answers several questions).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["combined_parts", "encode_combined"]


def combined_parts(data_dir: Path | None = None) -> list[tuple[str, list[str], list[str]]]:
    """``[(part name, ids, texts), ...]`` for scifact, nq-open, hotpotqa (in that order)."""
    from data import data_root, load_beir, load_halueval_qa
    from data.nq_open import load_nq_oracle

    root = Path(data_dir) if data_dir is not None else data_root()
    sci = load_beir(root / "scifact")
    parts = [("scifact", [d.id for d in sci.corpus], [d.full_text() for d in sci.corpus])]
    seen: dict[str, int] = {}
    for _q, _a, passage in load_nq_oracle(root / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz"):
        seen.setdefault(passage, len(seen))
    parts.append(("nq-open", [f"nq:{i}" for i in seen.values()], list(seen)))
    hq = load_halueval_qa()
    parts.append(("hotpotqa", [f"hotpotqa:{i}" for i in range(len(hq.corpus))], [d.text for d in hq.corpus]))
    return parts


def encode_combined(embedder, cache=None, data_dir: Path | None = None) -> tuple[np.ndarray, list[str]]:
    """(n, dim) document embeddings of the combined corpus and the part name of each row.

    Every part goes through :class:`retrieval.cache.EmbeddingCache` (fingerprint + corpus hash), so the
    second call reads three ``.npy`` files instead of encoding ~18k passages.
    """
    from retrieval.cache import EmbeddingCache

    cache = cache if cache is not None else EmbeddingCache()
    mats, names = [], []
    for name, ids, texts in combined_parts(data_dir):
        mats.append(cache.get_or_compute(embedder.fingerprint, ids, texts, embedder.encode_documents))
        names += [name] * len(ids)
    return np.concatenate(mats, axis=0), names
