"""``ragfix bench scale``: cross-encoder scoring throughput on Ray with 1 and then 2 workers.

Pairs: SciFact test claims x their BM25 top candidates (``--depth``), the first ``--pairs`` (default
10,000) in query order: the candidate lists reranking, distillation and judge labelling consume.
Each worker count runs on its own local Ray cluster of ``--num-cpus`` CPUs (default 2, all this
machine has), one cross-encoder per actor and one CPU per actor (Ray sets the actor's
``OMP_NUM_THREADS=1``), so 2 workers can at best double 1 worker's rate on 2 idle cores.
``throughput.{1,2}`` are pairs per second of wall time, actor start-up and model load included.
Identity: the 1- and 2-worker scores are compared with each other and, on the first
``--check-local`` pairs, with the local engine (``max_abs_diff``).

Run it on a quiet machine: on a machine shared with other jobs both rates measure the other jobs.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.cli.argtypes import non_negative_int, positive_int
from bench.report import check_output_path, write_results

__all__ = ["candidate_pairs", "run_scale", "add_parser"]


def candidate_pairs(n_pairs: int, depth: int = 50) -> list[tuple[str, str]]:
    """The first ``n_pairs`` (claim, abstract) pairs of SciFact test claims x BM25 top-``depth``."""
    from data import data_root, load_beir
    from retrieval.retrievers import BM25Retriever

    ds = load_beir(data_root() / "scifact")
    qids = list(ds.queries)
    res = BM25Retriever().index(ds.corpus).search([ds.queries[q] for q in qids], depth)
    pairs = [(ds.queries[q], ds.corpus[int(j)].full_text()) for i, q in enumerate(qids) for j in res.indices[i] if j >= 0]
    if len(pairs) < n_pairs:
        raise ValueError(f"only {len(pairs)} candidate pairs at depth {depth}; raise --depth or lower --pairs")
    return pairs[:n_pairs]


def run_scale(n_pairs: int = 10_000, model: str = "reranker-l6", workers: tuple[int, ...] = (1, 2), num_cpus: int = 2,
              batch_rows: int = 64, check_local: int = 200, depth: int = 50) -> dict:
    import time

    import numpy as np

    from scale import RayOptions, score_pairs

    pairs = candidate_pairs(n_pairs, depth)
    throughput, seconds, scores = {}, {}, {}
    for w in workers:
        t0 = time.perf_counter()
        scores[w] = score_pairs(pairs, model, engine="ray", options=RayOptions(workers=w, num_cpus=num_cpus, batch_rows=batch_rows))
        seconds[str(w)] = round(time.perf_counter() - t0, 2)
        throughput[str(w)] = round(n_pairs / seconds[str(w)], 2)
    out = {"pairs": n_pairs, "throughput": throughput, "seconds": seconds, "num_cpus": num_cpus,
           "load_avg_1m": round(os.getloadavg()[0], 2)}
    if len(workers) > 1:
        ws = list(workers)
        out["speedup"] = round(throughput[str(ws[-1])] / throughput[str(ws[0])], 3)
        out["max_abs_diff_between_worker_counts"] = float(max(np.abs(scores[w] - scores[ws[0]]).max() for w in ws))
    if check_local:
        local = score_pairs(pairs[:check_local], model, engine="local")
        out["max_abs_diff_vs_local"] = float(np.abs(local - scores[workers[0]][:check_local]).max())
        out["checked_local_pairs"] = int(min(check_local, n_pairs))
    return out


def _cmd(args: argparse.Namespace) -> int:
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    check_output_path(args.out)
    workers = tuple(int(w) for w in args.workers.split(","))
    if not workers or min(workers) < 1:
        print(f"ragfix bench scale: error: --workers must be comma-separated positive integers, got {args.workers!r}",
              file=sys.stderr)
        return 2
    m = run_scale(args.pairs, args.model, workers, args.num_cpus, args.batch_rows, args.check_local, args.depth)
    cfg = {"pairs": args.pairs, "model": args.model, "workers": list(workers), "num_cpus": args.num_cpus,
           "batch_rows": args.batch_rows, "depth": args.depth}
    rows = " | ".join(f"{w} worker(s): {t} pairs/s" for w, t in m["throughput"].items())
    write_results(args.out, cfg, m, markdown=f"{m['pairs']} SciFact BM25 candidate pairs, {args.model}, "
                                             f"{args.num_cpus} CPUs: {rows}; speedup {m.get('speedup')} "
                                             f"(load average {m['load_avg_1m']}).\n")
    print(m)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale", help="cross-encoder scoring throughput on Ray, 1 vs 2 workers (run on a quiet machine)")
    p.add_argument("--pairs", type=positive_int, default=10_000, help="candidate pairs (default 10000)")
    p.add_argument("--model", default="reranker-l6", help="registry cross-encoder")
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated (default 1,2)")
    p.add_argument("--num-cpus", type=positive_int, default=2, help="CPUs of each local Ray cluster (default 2)")
    p.add_argument("--batch-rows", type=positive_int, default=64)
    p.add_argument("--depth", type=positive_int, default=50, help="BM25 candidates per claim")
    p.add_argument("--check-local", type=non_negative_int, default=200, help="pairs also scored locally (0: skip)")
    p.add_argument("--out", type=Path, default=Path("results/scale.json"))
    p.set_defaults(func=_cmd)
