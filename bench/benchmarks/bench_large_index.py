"""``ragfix bench large-index``: the compressed IVF index beside Flat on the largest corpus here.

Corpus: SciFact + NQ-open gold passages + HotpotQA knowledge passages (``bench.benchmarks.large_corpus``,
~17.7k passages), MiniLM vectors from the embedding cache. Queries: SciFact test claims, NQ-open
questions and HotpotQA questions (up to ``--queries`` of each). For the index
:func:`retrieval.large.choose_factory` picks at this size with the IVF branch forced (``flat_below=0``),
and for the PQ code it picks from 10M vectors up, it reports recall@100 against Flat (top-100 overlap),
an ``nprobe`` sweep, bytes per vector (serialized index / vectors), train and add time, and the p50
single-query latency of both measured interleaved in one run (query i on Flat, then on the compressed
index, alternating which goes first) with the ratio. Latency on a loaded machine is noisy in
absolute terms; the ratio of interleaved runs is the number to read. The 10M / 100M lines are
arithmetic from the measured bytes per vector and the rule's K, stated as such.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from bench.cli.argtypes import positive_int
from bench.report import markdown_table, write_results

__all__ = ["run_large_index", "measure", "extrapolate", "add_parser"]


def _queries(per_source: int) -> list[str]:
    from data import data_root, load_beir, load_halueval_qa
    from data.nq_open import load_nq_oracle

    sci = load_beir(data_root() / "scifact")
    out = list(sci.queries.values())[:per_source]
    out += [q for q, _a, _p in load_nq_oracle()][:per_source]
    out += list(load_halueval_qa().queries.values())[:per_source]
    return out


def _recall_vs(reference: np.ndarray, got: np.ndarray) -> float:
    k = reference.shape[1]
    return float(np.mean([len(set(r.tolist()) & set(g.tolist())) / k for r, g in zip(reference, got)]))


def extrapolate(n: int, dim: int, bpv_code: float, code: str) -> dict:
    """Memory of Flat and of the rule's index at ``n`` vectors: arithmetic, not a measurement.

    IVF bytes = n * (code bytes + 8-byte id) + K centroids * dim * 4 + the HNSW32 coarse graph
    (K * 64 links * 4 bytes); ``bpv_code`` is the per-vector size of the measured index's code + id.
    """
    from retrieval.large import choose_factory

    plan = choose_factory(n, dim, code=code)
    quantizer = plan.nlist * dim * 4 + (plan.nlist * 64 * 4 if "HNSW" in plan.factory else 0)
    return {"factory": plan.factory, "nprobe": plan.nprobe, "flat_gb": round(n * dim * 4 / 1e9, 2),
            "compressed_gb": round((n * bpv_code + quantizer) / 1e9, 2), "train_vectors": 64 * plan.nlist}


def run_large_index(model: str = "minilm", per_source: int = 300, k: int = 100, seed: int = 0,
                    nprobes: tuple[int, ...] = (4, 8, 16, 32, 64), with_pq: bool = True) -> dict:
    import faiss

    from registry import load_embedder
    from retrieval.cache import EmbeddingCache
    from bench.benchmarks.large_corpus import encode_combined

    faiss.omp_set_num_threads(1)
    embedder = load_embedder(model)
    cache = EmbeddingCache()
    emb, parts = encode_combined(embedder, cache)
    qtexts = _queries(per_source)
    q = cache.get_or_compute(f"{embedder.fingerprint}-q", [str(i) for i in range(len(qtexts))], qtexts,
                             embedder.encode_queries)
    return measure(emb, q, parts, k, seed, nprobes, with_pq)


def measure(emb: np.ndarray, q: np.ndarray, parts: list[str], k: int = 100, seed: int = 0,
            nprobes: tuple[int, ...] = (4, 8, 16, 32, 64), with_pq: bool = True) -> dict:
    """The comparison on given document vectors ``emb`` and query vectors ``q`` (see the module docstring)."""
    import faiss

    from retrieval.large import build_index, bytes_per_vector, choose_factory, search_index

    n, dim = emb.shape
    flat = build_index(emb, "Flat")
    ref = search_index(flat, q, k).indices
    indexes = {"flat": {"factory": "Flat", "bytes_per_vector": round(bytes_per_vector(flat), 2)}}
    built = {}
    for name, code in (("compressed", "auto"), ("pq", f"PQ{dim // 4}"))[: 2 if with_pq else 1]:
        plan = choose_factory(n, dim, flat_below=0, code=code)
        t0 = time.perf_counter()
        idx = build_index(emb, plan.factory, nprobe=plan.nprobe, seed=seed)
        build_s = time.perf_counter() - t0
        sweep = {str(p): round(_recall_vs(ref, search_index(idx, q, k, nprobe=p).indices), 4) for p in nprobes}
        recall = _recall_vs(ref, search_index(idx, q, k, nprobe=plan.nprobe).indices)
        indexes[name] = {"factory": plan.factory, "nlist": plan.nlist, "nprobe": plan.nprobe,
                         "recall_at_100_vs_flat": round(recall, 4), "recall_by_nprobe": sweep,
                         "bytes_per_vector": round(bytes_per_vector(idx), 2),
                         "code_bytes_per_vector": int(faiss.extract_index_ivf(idx).code_size) + 8,  # code + 8-byte id
                         "build_s": round(build_s, 3)}
        built[name] = idx
    # interleaved single-query latency: flat and compressed alternate, first-mover swapped each query
    comp = built["compressed"]
    search_index(comp, q[:1], k, nprobe=indexes["compressed"]["nprobe"])
    lat = {"flat": [], "compressed": []}
    for i in range(q.shape[0]):
        order = (("flat", flat), ("compressed", comp)) if i % 2 == 0 else (("compressed", comp), ("flat", flat))
        for name, idx in order:
            t0 = time.perf_counter()
            idx.search(q[i:i + 1], k)
            lat[name].append(time.perf_counter() - t0)
    p50 = {name: float(np.median(v)) * 1000 for name, v in lat.items()}
    code_bpv = indexes["compressed"]["code_bytes_per_vector"]
    metrics = {
        "docs": n, "dim": dim, "queries": int(q.shape[0]),
        "parts": {p: parts.count(p) for p in dict.fromkeys(parts)},
        "recall_at_100_vs_flat": indexes["compressed"]["recall_at_100_vs_flat"],
        "bytes_per_vector": {name: d["bytes_per_vector"] for name, d in indexes.items()},
        "latency_p50_ms": {"flat": round(p50["flat"], 4), "compressed": round(p50["compressed"], 4),
                           "ratio_compressed_over_flat": round(p50["compressed"] / p50["flat"], 3)},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "indexes": indexes,
        "extrapolation_arithmetic": {
            # PQ{dim/4} with 8-bit codes stores exactly dim/4 bytes per vector (+ 8-byte id), measured or not
            f"{m}M": extrapolate(m * 1_000_000, dim, code_bpv if m < 10 else dim // 4 + 8, "auto")
            for m in (10, 100)},
    }
    return metrics


def _markdown(m: dict) -> str:
    cols = ["index", "factory", "nprobe", "recall@100 vs flat", "bytes/vector", "build s"]
    rows = [dict(zip(cols, [name, d["factory"], d.get("nprobe", "-"), d.get("recall_at_100_vs_flat", 1.0),
                            d["bytes_per_vector"], d.get("build_s", "-")])) for name, d in m["indexes"].items()]
    ecols = ["docs", "factory", "flat GB", "compressed GB", "training vectors"]
    ext = [dict(zip(ecols, [k, v["factory"], v["flat_gb"], v["compressed_gb"], v["train_vectors"]]))
           for k, v in m["extrapolation_arithmetic"].items()]
    lat = m["latency_p50_ms"]
    return (f"Combined corpus: {m['docs']} passages ({', '.join(f'{k} {v}' for k, v in m['parts'].items())}), "
            f"{m['queries']} queries, MiniLM ({m['dim']}-d).\n\n"
            + markdown_table(rows, cols)
            + f"\n\nSingle-query p50, interleaved in one run: compressed / flat = {lat['ratio_compressed_over_flat']} "
              f"(load average {m['load_avg_1m']} on 2 cores: read the ratio, not the milliseconds).\n\n"
            + "Extrapolation (arithmetic from the bytes per vector above and the rule's K, not measured):\n\n"
            + markdown_table(ext, ecols) + "\n")


def _cmd(args: argparse.Namespace) -> int:
    m = run_large_index(args.model, args.queries, seed=args.seed, with_pq=not args.skip_pq)
    cfg = {"model": args.model, "queries_per_source": args.queries, "seed": args.seed, "pq": not args.skip_pq}
    write_results(args.out, cfg, m, markdown=_markdown(m))
    print(_markdown(m))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("large-index", help="compressed IVF vs Flat on SciFact+NQ-open+HotpotQA passages: recall@100, bytes/vector, p50")
    p.add_argument("--model", default="minilm", help="registry embedder (default minilm)")
    p.add_argument("--queries", type=positive_int, default=300, help="queries per source (default 300)")
    p.add_argument("--seed", type=int, default=0, help="training-sample seed")
    p.add_argument("--skip-pq", action="store_true", help="measure only the rule's index at this size (SQ8), not the PQ code used from 10M")
    p.add_argument("--out", type=Path, default=Path("results/large_index.json"))
    p.set_defaults(func=_cmd)
