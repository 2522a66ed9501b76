"""``ragfix bench retrieval``: BM25, dense embedders and hybrid fusion on a BEIR-layout folder.

The diagnostic for Embedding Plateau (VI): every candidate first stage on the user's own corpus,
side by side, nDCG@10 / recall@100 / MRR@10, with a paired randomisation test of each system
against BM25 so a 1-point "win" is not mistaken for progress.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from data import RetrievalDataset, load_beir
from bench.eval.metrics import evaluate, run_from_results
from registry import load_embedder
from bench.report import markdown_table, write_results
from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever, Retriever
from bench.cli.argtypes import positive_int

__all__ = ["build_retriever", "run_retrieval_bench", "paired_randomization_p", "add_parser"]

log = logging.getLogger(__name__)

METRIC_NAMES = ("ndcg@10", "recall@100", "mrr@10")


def build_retriever(system: str, cache_dir: Path | None = None, embedders: dict | None = None) -> Retriever:
    """``bm25``, any registry embedder name, or ``hybrid`` / ``hybrid:a+b`` (RRF of the named systems).

    ``embedders`` (name -> loaded embedder) is filled and reused, so comparing ``minilm`` and
    ``hybrid`` in one run loads MiniLM once.
    """
    from retrieval.cache import EmbeddingCache

    embedders = {} if embedders is None else embedders
    if system == "bm25":
        return BM25Retriever()
    if system.startswith("hybrid"):
        parts = system.split(":", 1)[1].split("+") if ":" in system else ["bm25", "minilm"]
        return HybridRetriever([build_retriever(p, cache_dir, embedders) for p in parts], name=system)
    if system not in embedders:
        embedders[system] = load_embedder(system)
    return DenseRetriever(embedders[system], cache=EmbeddingCache(cache_dir) if cache_dir else None)


def paired_randomization_p(a: np.ndarray, b: np.ndarray, n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided paired randomisation (sign-flip) test of mean(a - b) = 0 (Smucker et al., CIKM 2007),
    by ``scipy.stats.permutation_test`` with paired samples."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or np.allclose(a - b, 0):
        return 1.0
    res = stats.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                 vectorized=True, n_resamples=n_perm, alternative="two-sided",
                                 random_state=np.random.default_rng(seed))
    return float(res.pvalue)


def run_retrieval_bench(ds: RetrievalDataset, systems: list[str], k: int = 100, cache_dir: Path | None = None) -> dict:
    qids = list(ds.queries)
    texts = [ds.queries[q] for q in qids]
    metrics: dict[str, dict] = {}
    per_query: dict[str, dict] = {}
    embedders: dict = {}
    for system in systems:
        t0 = time.perf_counter()
        retriever = build_retriever(system, cache_dir, embedders).index(ds.corpus)
        t1 = time.perf_counter()
        res = retriever.search(texts, k)
        t2 = time.perf_counter()
        run = run_from_results(qids, res, ds.corpus)
        means, per = evaluate(ds.qrels, run, METRIC_NAMES, per_query=True)
        means["index_s"] = round(t1 - t0, 3)
        means["query_ms"] = round(1000 * (t2 - t1) / max(len(qids), 1), 3)
        metrics[system] = means
        per_query[system] = per
    if "bm25" in per_query:
        for system in systems:
            if system != "bm25":
                a = np.array([per_query[system]["ndcg@10"][q] for q in ds.qrels])
                b = np.array([per_query["bm25"]["ndcg@10"][q] for q in ds.qrels])
                metrics[system]["p_vs_bm25"] = paired_randomization_p(a, b)
    return metrics


def _cmd(args: argparse.Namespace) -> int:
    ds = load_beir(args.data, args.split).limit(args.limit).sample_corpus(args.corpus_sample)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    metrics = run_retrieval_bench(ds, systems, k=args.k)
    rows = [{"system": s, **m} for s, m in metrics.items()]
    cols = ["system", *METRIC_NAMES, "p_vs_bm25", "index_s", "query_ms"]
    md = f"Retrieval on {ds.name} ({args.split}, {len(ds.queries)} queries, {len(ds.corpus)} docs)\n\n" + markdown_table(rows, cols)
    print(md)
    if args.out:
        write_results(args.out, {"data": str(args.data), "split": args.split, "systems": systems, "limit": args.limit,
                                 "k": args.k, "corpus_sample": args.corpus_sample, "n_queries": len(ds.queries), "n_docs": len(ds.corpus)}, metrics, md)
        log.info(f"wrote {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrieval", help="first-stage retrieval quality: BM25 vs embedders vs hybrid (VI)")
    p.add_argument("--data", required=True, type=Path, help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test")
    p.add_argument("--systems", default="bm25,minilm,e5-small,hybrid",
                   help="comma list: bm25, registry embedder names, hybrid (= bm25+minilm) or hybrid:a+b")
    p.add_argument("--k", type=positive_int, default=100, help="depth retrieved per query")
    p.add_argument("--limit", type=positive_int, default=None, help="first N judged queries only")
    p.add_argument("--corpus-sample", type=positive_int, default=None,
                   help="index only the judged documents plus random others, N in all (for slow encoders)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (a .md table is written beside it)")
    p.set_defaults(func=_cmd)
