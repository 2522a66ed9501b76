"""Indexes past what a flat scan serves: the faiss index-factory string chosen from the corpus size,
trained on a sample, with ``nprobe`` set, optionally split over shards.

The rule (:func:`choose_factory`) follows the faiss wiki page "Guidelines to choose an index"
(github.com/facebookresearch/faiss/wiki/Guidelines-to-choose-an-index), section "How big is the
dataset?", and "Indexing 1M vectors" / "Indexing 1G vectors" for the training-set size:

- below ``flat_below`` vectors (default 50,000): ``Flat``. An exact scan of 50k x 384 float32 is
  ~77 MB and a few milliseconds per query; the guide's IVF advice starts where a scan stops being cheap.
- below 1M: ``IVF{K},{code}`` with ``K`` the power of two nearest ``4 * sqrt(N)`` (the guide gives
  ``4*sqrt(N)`` to ``16*sqrt(N)``; the low end needs the fewest training vectors) and a flat coarse
  quantizer.
- 1M-10M: ``IVF65536_HNSW32,{code}``; 10M-100M: ``IVF262144_HNSW32,{code}``; above: ``IVF1048576_HNSW32,{code}``
  (the guide's values; the HNSW32 coarse quantizer keeps assigning a vector to one of 2^16-2^20
  centroids cheap).
- training: k-means needs "between 30*K and 256*K vectors" (the guide), and faiss's own k-means warns
  below 39 per centroid (``ClusteringParameters.min_points_per_centroid``). :func:`training_sample_size`
  takes ``64 * K`` capped at N and refuses fewer than ``39 * K``; below 1M vectors ``K`` is halved
  until ``39 * K <= N``.
- ``nprobe``: ``K / 4`` clamped to [8, 256]. Measured, not from the guide: on the combined corpus
  here (17,718 MiniLM vectors, IVF256,SQ8) recall@100 against Flat was 0.82 at nprobe=16 (K/16) and
  0.96 at nprobe=64 (K/4); recall@100 needs far more lists than the recall@1-10 the guide's
  benchmarks tune for. For large K the cap of 256 is a starting point: sweep it with
  ``ragfix bench large-index`` (``recall_by_nprobe``) on the real corpus.
- code: ``SQ8`` (1 byte per dimension, 4x smaller than float32) below 10M vectors, ``PQ{dim/4}``
  (4 dimensions per byte, 16x smaller) from 10M up, where memory is what runs out first (the guide:
  "if memory is quite important: ... PQ").

Failure mode: an IVF index trained on fewer than ``39 * K`` vectors has poorly placed centroids and
loses recall; :func:`build_index` raises instead of training on too few. Measurement:
``ragfix bench large-index`` reports recall@100 of the compressed index against ``Flat`` on the
same vectors, bytes per vector of both, and query latency (``docs/scale-out.md``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from retrieval.types import SearchResults

MIN_TRAIN_PER_CENTROID = 39

__all__ = ["MIN_TRAIN_PER_CENTROID", "IndexPlan", "choose_factory", "training_sample_size", "build_index", "search_index", "bytes_per_vector"]


class IndexPlan(NamedTuple):
    """What :func:`choose_factory` decided: the factory string, ``K`` (0 for Flat) and the default ``nprobe``."""

    factory: str
    nlist: int
    nprobe: int


def _pow2_near(x: float) -> int:
    return int(2 ** round(math.log2(max(x, 1.0))))


def choose_factory(n: int, dim: int, flat_below: int = 50_000, code: str = "auto") -> IndexPlan:
    """The faiss index-factory string for ``n`` vectors of ``dim`` dimensions (the rule in the module docstring).

    ``code`` is ``"auto"`` (SQ8 below 10M vectors, PQ{dim/4} from 10M), ``"SQ8"``, ``"PQ{M}"`` or ``"Flat"``.
    ``flat_below=0`` forces the IVF branch (how a small corpus measures what a large one would get).
    ``nprobe`` defaults to ``K / 4`` clamped to [8, 256] (measured; see the module docstring).
    """
    if n <= 0 or dim <= 0:
        raise ValueError(f"choose_factory: n and dim must be positive, got n={n}, dim={dim}")
    if n < flat_below:
        return IndexPlan("Flat", 0, 0)
    if code == "auto":
        if dim % 4:
            raise ValueError(f"choose_factory: PQ needs dim divisible by 4, got {dim}; pass code='SQ8'")
        code = "SQ8" if n < 10_000_000 else f"PQ{dim // 4}"
    if code.startswith("PQ") and dim % int(code[2:].split("x")[0]):
        raise ValueError(f"choose_factory: {code} needs dim divisible by its M, got dim={dim}")
    if n < 1_000_000:
        k = _pow2_near(4 * math.sqrt(n))
        while k > 1 and MIN_TRAIN_PER_CENTROID * k > n:
            k //= 2
        quantizer = f"IVF{k}"
    else:
        k = 65_536 if n < 10_000_000 else 262_144 if n < 100_000_000 else 1_048_576
        quantizer = f"IVF{k}_HNSW32"
    return IndexPlan(f"{quantizer},{code}", k, min(256, max(8, k // 4)))


def training_sample_size(n: int, nlist: int, train_per_centroid: int = 64) -> int:
    """Vectors to train ``nlist`` centroids on: ``train_per_centroid * nlist`` capped at ``n``.

    Raises :class:`ValueError` when ``train_per_centroid`` is below 39 or ``n`` holds fewer than
    ``39 * nlist`` vectors (centroids trained on fewer are poorly placed and recall drops).
    """
    if train_per_centroid < MIN_TRAIN_PER_CENTROID:
        raise ValueError(f"train_per_centroid must be >= {MIN_TRAIN_PER_CENTROID} (faiss guide: 30*K to 256*K; "
                         f"faiss k-means warns below 39), got {train_per_centroid}")
    if n < MIN_TRAIN_PER_CENTROID * nlist:
        raise ValueError(f"{nlist} lists need >= {MIN_TRAIN_PER_CENTROID * nlist} training vectors "
                         f"({MIN_TRAIN_PER_CENTROID} per list); got {n}. Use fewer lists or 'Flat'")
    return min(n, train_per_centroid * nlist)


def build_index(x: np.ndarray, factory: str, nprobe: int | None = None, shards: int = 1, seed: int = 0,
                train_per_centroid: int = 64):
    """A trained, filled faiss index (inner product) over ``x``; ``shards > 1`` gives a ``faiss.IndexShards``.

    Training uses a seeded random sample of :func:`training_sample_size` rows; an IVF index for which
    ``x`` holds fewer than ``39 * K`` rows raises :class:`ValueError` (use fewer lists or ``Flat``).
    Shards hold contiguous row ranges and share one trained index (cloned), so a sharded search
    returns the same ids as the unsharded one (``successive_ids``: shard ``s`` numbers its rows from
    the end of shard ``s-1``). Shards are what a multi-machine deployment places one per machine.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"build_index: x must be a non-empty (n, dim) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("build_index: x contains NaN or inf; re-encode the corpus")
    if shards < 1 or shards > x.shape[0]:
        raise ValueError(f"build_index: shards must be in [1, {x.shape[0]}], got {shards}")
    n, dim = x.shape
    try:
        base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"faiss could not build index {factory!r}: {exc}".splitlines()[0]) from None
    if not base.is_trained:
        ivf = faiss.extract_index_ivf(base)
        try:
            m = training_sample_size(n, ivf.nlist, train_per_centroid)
        except ValueError as exc:
            raise ValueError(f"build_index: {factory!r}: {exc}") from None
        sample = x[np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))]
        base.train(sample)
    if nprobe is not None:
        _set_nprobe(base, nprobe)
    if shards == 1:
        base.add(x)
        return base
    index = faiss.IndexShards(dim, True, True)  # threaded, successive_ids
    index.own_indices = True
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for s in range(shards):
        part = faiss.clone_index(base)
        part.add(x[bounds[s]:bounds[s + 1]])
        index.add_shard(part)
        part.this.disown()  # the IndexShards owns it now
    return index


def _set_nprobe(index, nprobe: int) -> None:
    import faiss

    if nprobe < 1:
        raise ValueError(f"nprobe must be >= 1, got {nprobe}")
    try:
        faiss.extract_index_ivf(index).nprobe = int(nprobe)
    except RuntimeError:
        pass  # not an IVF index: nothing to probe


def search_index(index, queries: np.ndarray, k: int, nprobe: int | None = None) -> SearchResults:
    """Top-``k`` inner-product search; ``nprobe`` (IVF only) is set on every shard first."""
    import faiss

    if nprobe is not None:
        if isinstance(index, faiss.IndexShards):
            for s in range(index.count()):
                _set_nprobe(faiss.downcast_index(index.at(s)), nprobe)
        else:
            _set_nprobe(index, nprobe)
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    scores, idx = index.search(q, min(k, int(index.ntotal)))
    return SearchResults(idx.astype(np.int64), scores.astype(np.float32))


def bytes_per_vector(index) -> float:
    """Serialized size of ``index`` divided by its vector count (codes, ids, centroids and all)."""
    import faiss

    if index.ntotal == 0:
        raise ValueError("bytes_per_vector: empty index")
    if isinstance(index, faiss.IndexShards):
        total = sum(faiss.serialize_index(faiss.downcast_index(index.at(s))).size for s in range(index.count()))
    else:
        total = faiss.serialize_index(index).size
    return float(total) / float(index.ntotal)
