"""``ragfix index`` and ``ragfix score pairs``: the heavy offline jobs, in this process or on Ray.

``ragfix index --data DIR --model NAME [--engine local|ray] [--workers N] [--address ADDR]
[--compare-local] --out I.json`` encodes the corpus of a BEIR-layout folder (``DIR/corpus.jsonl``) or a
documents JSONL file into the embedding cache (``retrieval.cache.EmbeddingCache``: the entry every
benchmark and ``DenseRetriever`` read, keyed by model fingerprint + corpus hash). ``--engine ray``
computes the matrix on a Ray actor pool (``scale``); ``--compare-local`` also encodes it in this
process and writes ``max_abs_diff``. When ``DIR`` has ``queries.jsonl`` and ``qrels/test.tsv`` the
dense-retrieval metrics of the matrix are written too (the check that both engines retrieve alike).

``ragfix score pairs --pairs F.jsonl --model NAME [--engine ...] --out S.json`` scores
``{"query", "document"}`` lines with a registry cross-encoder and writes the scores in input order.

Bad input (missing folder, malformed JSONL, unknown model, an unwritable ``--out``) exits 2 with one
line on stderr and writes nothing.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from bench.cli.argtypes import positive_int

__all__ = ["add_parser", "read_pairs", "run_index", "run_score_pairs"]


def _docs(data: Path):
    from data import DatasetError, load_documents_jsonl

    if data.is_dir():
        if not (data / "corpus.jsonl").is_file():
            raise DatasetError(f"{data}: no corpus.jsonl; --data takes a BEIR-layout folder or a documents .jsonl file")
        return load_documents_jsonl(data / "corpus.jsonl")
    if data.is_file():
        return load_documents_jsonl(data)
    raise DatasetError(f"{data}: no such file or folder (--data)")


def _options(args: argparse.Namespace):
    from scale import RayOptions

    return RayOptions(workers=args.workers, batch_rows=args.batch_rows, address=args.address,
                      num_cpus=args.num_cpus, object_store_memory=args.object_store_mb * 1024 * 1024)


def run_index(data: Path, model: str, engine: str, options, compare_local: bool = False, cache_dir: Path | None = None) -> dict:
    """Encode ``data``'s corpus into the embedding cache with ``engine``; returns the result keys."""
    import numpy as np

    from registry import load_embedder
    from retrieval.cache import EmbeddingCache, corpus_hash
    from scale import encode_texts

    docs = _docs(Path(data))
    ids, texts = [d.id for d in docs], [d.full_text() for d in docs]
    embedder = load_embedder(model)
    cache = EmbeddingCache(cache_dir)
    path = cache.path_for(embedder.fingerprint, corpus_hash(ids, texts))
    computed = {}

    def encode(t):
        computed["emb"] = encode_texts(t, model, engine=engine, options=options, embedder=embedder)
        return computed["emb"]

    t0 = time.perf_counter()
    emb = cache.get_or_compute(embedder.fingerprint, ids, texts, encode, refresh=compare_local)
    seconds = time.perf_counter() - t0
    out = {"docs": len(docs), "dim": int(emb.shape[1]), "engine": engine,
           "workers": options.workers if engine == "ray" else 1, "seconds": round(seconds, 3),
           "cache_hit": "emb" not in computed, "cache_file": str(path)}
    if compare_local:
        local = emb if engine == "local" else encode_texts(texts, model, engine="local", embedder=embedder)
        out["max_abs_diff"] = float(np.abs(local - emb).max())
    folder = Path(data)
    if folder.is_dir() and (folder / "queries.jsonl").is_file() and (folder / "qrels" / "test.tsv").is_file():
        out["metrics"] = _retrieval_metrics(folder, docs, emb, embedder)
    return out


def _retrieval_metrics(folder: Path, docs, emb, embedder) -> dict:
    from data import load_beir
    from bench.eval.metrics import evaluate, run_from_results
    from retrieval.dense import DenseIndex

    ds = load_beir(folder)
    qids = list(ds.queries)
    res = DenseIndex(emb.shape[1]).add(emb).search(embedder.encode_queries([ds.queries[q] for q in qids]), 100)
    return {k: round(float(v), 4) for k, v in evaluate(ds.qrels, run_from_results(qids, res, docs), ("ndcg@10", "recall@100")).items()}


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """``{"query": str, "document": str}`` per line (``doc``/``text`` accepted for the document)."""
    from data import DatasetError, read_jsonl

    pairs = []
    for lineno, obj in read_jsonl(path):
        q = obj.get("query")
        d = next((obj[k] for k in ("document", "doc", "text") if k in obj), None)
        if not isinstance(q, str) or not isinstance(d, str):
            raise DatasetError(f"{path}:{lineno}: need string fields 'query' and 'document'")
        pairs.append((q, d))
    if not pairs:
        raise DatasetError(f"{path}: no pairs; write one {{\"query\": ..., \"document\": ...}} object per line")
    return pairs


def run_score_pairs(pairs: list[tuple[str, str]], model: str, engine: str, options, compare_local: bool = False) -> dict:
    """Score ``pairs``; returns ``{"pairs", "seconds", "workers", "pairs_per_s", "scores", ...}``."""
    import numpy as np

    from scale import score_pairs

    t0 = time.perf_counter()
    scores = score_pairs(pairs, model, engine=engine, options=options)
    seconds = time.perf_counter() - t0
    out = {"pairs": len(pairs), "engine": engine, "workers": options.workers if engine == "ray" else 1,
           "seconds": round(seconds, 3), "pairs_per_s": round(len(pairs) / seconds, 2)}
    if compare_local:
        local = score_pairs(pairs, model, engine="local")
        out["max_abs_diff"] = float(np.abs(local - scores).max())
    out["scores"] = [float(s) for s in scores]
    return out


def _index_cmd(args: argparse.Namespace) -> int:
    from bench.report import check_output_path, write_results

    check_output_path(args.out)
    metrics = run_index(args.data, args.model, args.engine, _options(args), args.compare_local)
    cfg = {"data": str(args.data), "model": args.model, "engine": args.engine, "workers": args.workers,
           "batch_rows": args.batch_rows, "address": args.address}
    write_results(args.out, cfg, metrics)
    print({k: v for k, v in metrics.items() if k != "cache_file"})
    return 0


def _score_cmd(args: argparse.Namespace) -> int:
    from bench.report import check_output_path, write_results

    check_output_path(args.out)
    pairs = read_pairs(args.pairs)
    metrics = run_score_pairs(pairs, args.model, args.engine, _options(args), args.compare_local)
    cfg = {"pairs": str(args.pairs), "model": args.model, "engine": args.engine, "workers": args.workers,
           "batch_rows": args.batch_rows, "address": args.address}
    write_results(args.out, cfg, metrics)
    print({k: v for k, v in metrics.items() if k != "scores"})
    return 0


def _engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="run here (default) or on a Ray actor pool")
    p.add_argument("--workers", type=positive_int, default=1, help="Ray actors, one model load each (--engine ray)")
    p.add_argument("--batch-rows", type=positive_int, default=64, help="rows per batch sent to an actor")
    p.add_argument("--address", default=None, help="existing Ray cluster (e.g. ray://head:10001 or auto); default: a local one")
    p.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs of the local cluster (default: --workers)")
    p.add_argument("--object-store-mb", type=positive_int, default=400, help="object store of the local cluster (MB)")
    p.add_argument("--compare-local", action="store_true", help="also run the local engine and write max_abs_diff")
    p.add_argument("--verbose", action="store_true", help="log progress (rows done) to stderr")


def _with_logging(fn):
    def run(args: argparse.Namespace) -> int:
        if args.verbose or args.engine == "ray":
            logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
        return fn(args)
    return run


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``ragfix index`` and ``ragfix score pairs``."""
    p = sub.add_parser("index", help="encode a corpus into the embedding cache (locally or on Ray)")
    p.add_argument("--data", type=Path, required=True, help="BEIR-layout folder (corpus.jsonl) or a documents .jsonl file")
    p.add_argument("--model", default="minilm", help="registry embedder (default minilm)")
    p.add_argument("--out", type=Path, required=True, help="result JSON (docs, seconds, workers, [max_abs_diff], [metrics])")
    _engine_flags(p)
    p.set_defaults(func=_with_logging(_index_cmd))

    score = sub.add_parser("score", help="score with a cross-encoder (locally or on Ray)").add_subparsers(dest="score", required=True)
    s = score.add_parser("pairs", help="score {query, document} JSONL lines; scores in input order")
    s.add_argument("--pairs", type=Path, required=True, help="JSONL: one {\"query\", \"document\"} object per line")
    s.add_argument("--model", default="reranker-l6", help="registry cross-encoder (default reranker-l6)")
    s.add_argument("--out", type=Path, required=True, help="result JSON (pairs, seconds, pairs_per_s, scores)")
    _engine_flags(s)
    s.set_defaults(func=_with_logging(_score_cmd))
