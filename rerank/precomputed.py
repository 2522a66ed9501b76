"""A pruner whose document side is computed at index time: the request path pays for the query only.

Failure mode VIII (Reranker on the Request Path), second round. The first round's 2-layer
cross-encoder pruner cost 473 ms per 100 SciFact pairs on these 2-core machines, more than the
whole 8x budget, because a cross-encoder reads every document again for every query. Whatever does
not depend on the query belongs in the index: here, the dense embedder's document vectors
(:class:`DocVectorIndex`, built once through :class:`retrieval.cache.EmbeddingCache` and keyed by
the embedder's fingerprint), so pruning a query's K candidates costs one query encoding plus K dot
products.

- :class:`DocVectorIndex`: document id -> vector, stored float16 (``bytes_per_doc``), with its
  build time (``index_s``) and the embedder fingerprint it was built with. Looking up an id the
  index does not hold, or pairing it with an embedder of another fingerprint, is refused.
- :class:`PrecomputedPruner`: the pruning score of each candidate, z-score CombSUM
  (:func:`rerank.fusion.zsum_scores`, weights 1) of the query-document cosine and the first stage's
  own score for the candidate (BM25's in ``ragfix bench rerank``).
- :class:`PrunedRerank`: ``best``. The pruner orders the K candidates; the ``keep`` best go to the
  cross-encoder (a :class:`rerank.RerankEngine`, bf16 in ``best``); the final order of the kept
  ones is either the fused stage over them (``final="fused"``: z-score CombSUM of the cross-encoder
  logit, the first-stage score and the cosine, as :class:`rerank.stage.FusedRerankStage`) or the
  cross-encoder alone (``final="ce"``); the pruned ones follow in the pruner's order.

Measured by ``ragfix bench rerank`` (variants ``best``, ``best_ce``, ``dense_pruner``): 300 SciFact test queries,
``best`` 238 ms against naive ``CrossEncoder.predict``'s 2,182 ms at p50 (9.2x), nDCG@10 +0.056 [+0.032, +0.081]
(``results/rerank_scifact_best.json``); the held-out HotpotQA corpus in ``results/rerank_hotpot_quality.json``.

Left out: a student distilled from the cross-encoder's scores (a better-agreeing pruner), late
interaction (token vectors per document) and PreTTR-style split layers; all three would slot in
behind the same :class:`PrecomputedPruner` contract (a query-side encoder + a per-document state).

Example::

    >>> emb = load_embedder("minilm")                                                  # doctest: +SKIP
    >>> index = DocVectorIndex.build(emb, corpus)                                      # doctest: +SKIP
    >>> best = PrunedRerank(PrecomputedPruner(emb, index), RerankEngine(ce, "bf16"), keep=16)  # doctest: +SKIP
    >>> best.rank(query, candidates, bm25_scores).documents[:10]                        # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from rerank.fusion import zsum_scores
from retrieval.types import Document

__all__ = ["FINALS", "DEFAULT_KEEP", "DocVectorIndex", "PrecomputedPruner", "PrunedRanking", "PrunedRerank", "keep_count"]

# The keep of the measured ``best`` (results/rerank_scifact_best.json: 16 bf16 pairs after the pruner;
# rerank.presets.PRECOMPUTED_KEEP says why 16), so a PrunedRerank built by hand is the measured one.
DEFAULT_KEEP = 16

FINALS = ("fused", "ce")


class DocVectorIndex:
    """Index-time document state: one float16 vector per document id, keyed by embedder fingerprint.

    Built with :meth:`build` (through the embedding cache: a second build with the same weights and
    texts loads the matrix instead of encoding it; ``refresh=True`` encodes again, so ``index_s``
    measures a real build). ``index_s``: seconds the build took; ``from_cache``: whether it was a load.
    """

    def __init__(self, fingerprint: str, ids: Sequence[str], vectors: np.ndarray, index_s: float = 0.0,
                 from_cache: bool = False) -> None:
        vectors = np.asarray(vectors)
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError("DocVectorIndex: fingerprint must be the embedder's non-empty fingerprint string")
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"DocVectorIndex: vectors must be (n_docs, dim) with one row per id; got shape "
                             f"{vectors.shape} for {len(ids)} ids")
        if not np.isfinite(vectors).all():
            raise ValueError(f"DocVectorIndex: {int((~np.isfinite(vectors)).any(axis=1).sum())} document vectors are not finite")
        self.fingerprint = fingerprint
        self.ids = list(ids)
        self.row = {d: i for i, d in enumerate(self.ids)}
        if len(self.row) != len(self.ids):
            raise ValueError(f"DocVectorIndex: {len(self.ids) - len(self.row)} duplicate document ids")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float16)
        self.index_s = float(index_s)
        self.from_cache = bool(from_cache)

    @classmethod
    def build(cls, embedder: Any, docs: Sequence[Document], cache_dir: Path | str | None = None,
              refresh: bool = False) -> "DocVectorIndex":
        """Encode ``docs`` with ``embedder.encode_documents`` (via the cache keyed by ``embedder.fingerprint``)."""
        from retrieval.cache import EmbeddingCache

        if not docs:
            raise ValueError("DocVectorIndex.build: no documents to index")
        fp = getattr(embedder, "fingerprint", None)
        if not fp or not hasattr(embedder, "encode_documents"):
            raise TypeError(f"DocVectorIndex.build: embedder must be a retrieval.Embedder (fingerprint, encode_documents); "
                            f"got {type(embedder).__name__}")
        cache = EmbeddingCache(None if cache_dir is None else Path(cache_dir))
        ids, texts = [d.id for d in docs], [d.full_text() for d in docs]
        encoded = []

        def encode(t: Sequence[str]) -> np.ndarray:
            encoded.append(len(t))
            return embedder.encode_documents(t)

        t0 = time.perf_counter()
        vecs = cache.get_or_compute(fp, ids, texts, encode, refresh=refresh)
        return cls(fp, ids, vecs, index_s=time.perf_counter() - t0, from_cache=not encoded)

    @property
    def bytes_per_doc(self) -> int:
        """Bytes of document-side state per document (the float16 vector)."""
        return int(self.vectors.shape[1] * self.vectors.itemsize)

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Row of each id; an id the index does not hold is refused (rebuild the index over this corpus)."""
        try:
            return np.fromiter((self.row[d] for d in doc_ids), dtype=np.int64, count=len(doc_ids))
        except KeyError as exc:
            raise KeyError(f"DocVectorIndex: document {exc.args[0]!r} is not in the index ({len(self)} docs, "
                           f"fingerprint {self.fingerprint}); build the index over the corpus the candidates come from") from None

    def vectors_for(self, doc_ids: Sequence[str]) -> np.ndarray:
        """float32 (len(doc_ids), dim) vectors of ``doc_ids``."""
        return self.vectors[self.rows(doc_ids)].astype(np.float32)


class PrecomputedPruner:
    """Pruning scores from the query's embedding and the stored document vectors, fused with the first stage.

    Args:
        embedder: the query side (``encode_queries``); its ``fingerprint`` must equal ``index.fingerprint``.
        index: the :class:`DocVectorIndex` built with the same embedder.
        first_stage_weight: weight of the first-stage score's z-score beside the cosine's (1: the fused
            stage's equal weights; 0: cosine alone).
    """

    def __init__(self, embedder: Any, index: DocVectorIndex, first_stage_weight: float = 1.0) -> None:
        if not isinstance(index, DocVectorIndex):
            raise TypeError(f"PrecomputedPruner: index must be a DocVectorIndex, got {type(index).__name__}")
        fp = getattr(embedder, "fingerprint", None)
        if fp != index.fingerprint:
            raise ValueError(f"PrecomputedPruner: the embedder's fingerprint {fp!r} is not the one the index was built "
                             f"with ({index.fingerprint!r}); rebuild the index with this embedder or pass the matching one")
        if not np.isfinite(first_stage_weight) or first_stage_weight < 0:
            raise ValueError(f"PrecomputedPruner: first_stage_weight must be finite and >= 0, got {first_stage_weight}")
        self.embedder, self.index = embedder, index
        self.first_stage_weight = float(first_stage_weight)

    def cosines(self, query: str, docs: Sequence[Document]) -> np.ndarray:
        """Query-document cosine per candidate (one query encoding, one small matrix-vector product)."""
        q = np.asarray(self.embedder.encode_queries([query]), dtype=np.float32).reshape(-1)
        return self.index.vectors_for([d.id for d in docs]) @ q

    def score(self, query: str, docs: Sequence[Document], first_stage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pruning score, cosine)`` per candidate; ``first_stage`` holds one score per candidate."""
        fs = np.asarray(first_stage, dtype=np.float64)
        if fs.shape != (len(docs),):
            raise ValueError(f"PrecomputedPruner: first_stage has shape {fs.shape}, the candidates ({len(docs)},); "
                             "pass one first-stage score per candidate")
        cos = self.cosines(query, docs).astype(np.float64)
        return zsum_scores({"dense": cos, "first_stage": fs}, {"first_stage": self.first_stage_weight}), cos


def keep_count(prune: np.ndarray, keep: int, gap: float | None = None, min_keep: int = 1) -> int:
    """How many candidates go to the model: ``keep``, or with ``gap`` the candidates whose pruner z-score is
    within ``gap`` standard deviations of the top one, clipped to ``[min_keep, keep]`` (a per-query count
    read off the pruner's score distribution: a clear head passes few, a flat one up to ``keep``)."""
    n = len(prune)
    if gap is None:
        return min(keep, n)
    p = np.asarray(prune, dtype=np.float64)
    sd = p.std()
    z = (p - p.mean()) / sd if sd > 0 else np.zeros_like(p)
    return int(np.clip(int((z >= z.max() - gap).sum()), min(min_keep, keep, n), min(keep, n)))


class PrunedRanking(NamedTuple):
    """Candidates best first (``documents``, ``order`` into the input), the kept count and each signal."""

    documents: list[Document]
    order: np.ndarray
    kept: int
    signals: dict[str, np.ndarray]


class PrunedRerank:
    """``best``: the precomputed pruner over the K candidates, the cross-encoder over the ``keep`` best.

    Args:
        pruner: a :class:`PrecomputedPruner`.
        ranker: the cross-encoder scorer (anything with ``score_pairs``: a :class:`rerank.RerankEngine`).
        keep: candidates passed to the cross-encoder (the most, with ``gap``); default :data:`DEFAULT_KEEP`, the measured 16.
        gap / min_keep: optional per-query count (:func:`keep_count`): the candidates within ``gap`` pruner
            standard deviations of the top one, at least ``min_keep``.
        final: ``"fused"`` (z-score CombSUM of the logit, the first-stage score and the cosine over the
            kept candidates, the fused stage's rule) or ``"ce"`` (the logit alone).
        name: shown in reports.

    ``pairs_scored_`` counts the pairs the cross-encoder scored.
    """

    def __init__(self, pruner: PrecomputedPruner, ranker: Any, keep: int = DEFAULT_KEEP, final: str = "fused",
                 name: str = "best", gap: float | None = None, min_keep: int = 8) -> None:
        if not isinstance(pruner, PrecomputedPruner):
            raise TypeError(f"PrunedRerank: pruner must be a PrecomputedPruner, got {type(pruner).__name__}")
        if not hasattr(ranker, "score_pairs"):
            raise TypeError(f"PrunedRerank: ranker must have score_pairs (a rerank.RerankEngine), got {type(ranker).__name__}")
        if not isinstance(keep, (int, np.integer)) or keep < 1:
            raise ValueError(f"PrunedRerank: keep must be an int >= 1, got {keep!r}")
        if final not in FINALS:
            raise ValueError(f"PrunedRerank: final must be one of {', '.join(FINALS)}, got {final!r}")
        if gap is not None and (not np.isfinite(gap) or gap <= 0):
            raise ValueError(f"PrunedRerank: gap must be a positive number of standard deviations or None, got {gap!r}")
        if not isinstance(min_keep, (int, np.integer)) or min_keep < 1:
            raise ValueError(f"PrunedRerank: min_keep must be an int >= 1, got {min_keep!r}")
        self.pruner, self.ranker, self.keep, self.final, self.name = pruner, ranker, int(keep), final, name
        self.gap, self.min_keep = gap, int(min_keep)
        self.pairs_scored_ = 0

    @staticmethod
    def first_stage_scores(first_stage: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """One score per candidate: the array itself, or from a pipeline's signals mapping its ``bm25``
        signal (a hybrid first stage), else its only signal; several signals without ``bm25`` are refused."""
        if isinstance(first_stage, Mapping):
            if "bm25" in first_stage:
                return np.asarray(first_stage["bm25"], dtype=np.float64)
            if len(first_stage) != 1:
                raise ValueError(f"PrunedRerank: first_stage signals {sorted(first_stage)} have no 'bm25'; "
                                 "pass one score array per candidate")
            return np.asarray(next(iter(first_stage.values())), dtype=np.float64)
        return np.asarray(first_stage, dtype=np.float64)

    def rank(self, query: str, docs: Sequence[Document], first_stage: np.ndarray | Mapping[str, np.ndarray]) -> PrunedRanking:
        """Rank ``docs`` (the first stage's candidates) given their first-stage scores.

        No place is final before the end (so this stage reports none to the streaming overlap of
        :class:`pipeline.Pipeline`): each fused score needs every kept logit (z-scores over the kept), and
        the kept pairs go through the model in one forward pass.
        """
        docs = list(docs)
        if not docs:
            return PrunedRanking([], np.zeros(0, dtype=np.int64), 0, {})
        first_stage = self.first_stage_scores(first_stage)
        prune, cos = self.pruner.score(query, docs, first_stage)
        by_pruner = np.argsort(-prune, kind="stable")
        n_keep = keep_count(prune, self.keep, self.gap, self.min_keep)
        kept = by_pruner[:n_keep]
        ce = np.asarray(self.ranker.score_pairs([(query, docs[int(i)].full_text()) for i in kept]), dtype=np.float64)
        self.pairs_scored_ += len(kept)
        if self.final == "fused":
            top = zsum_scores({"ce": ce, "first_stage": first_stage[kept], "dense": cos[kept]})
        else:
            top = ce
        order = np.concatenate([kept[np.argsort(-top, kind="stable")], by_pruner[n_keep:]])
        ranked = [docs[int(i)] for i in order]
        return PrunedRanking(ranked, order, len(kept),
                             {"pruner": prune, "dense": cos, "ce_kept": ce})
