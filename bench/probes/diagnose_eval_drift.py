"""``ragfix diagnose eval-drift --eval EVAL.jsonl --traffic TRAFFIC.jsonl [--corpus DIR]``: Eval Drift (I) on your logs.

Is the eval set still a sample of today's traffic, which query clusters grew or appeared, what is
today's metric (when eval rows carry labels), and which traffic queries to label next.

Input, one JSON object per line:

* eval rows: ``{"query": str}`` plus, on every row or on none, either ``"metric"`` (the per-query
  metric of your system, e.g. nDCG@10) or ``"relevant"`` (list of relevant document ids; needs
  ``--corpus``, and the metric is then BM25's nDCG@10 on that corpus); optional ``"timestamp"``.
* traffic rows: ``{"query": str}``, optional ``"timestamp"`` (only ``query`` is used).

Bad input (a missing or empty file, a line that is not JSON, a row without ``query``, a label on some
eval rows but not others) stops with exit 2 and names the file and line; nothing is written.
Mechanism: :mod:`monitor.eval_drift` on MiniLM query embeddings (``--embedder``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np

from data import DatasetError, read_jsonl

__all__ = ["add_parser", "read_query_log", "diagnose", "to_label_rows"]

log = logging.getLogger(__name__)


def read_query_log(path: Path | str, role: str, lines: list[int] | None = None
                   ) -> tuple[list[str], list[float] | None, list[list[str]] | None]:
    """``(queries, metrics or None, relevant ids or None)`` from a JSONL log; raises :class:`DatasetError`.

    ``lines``, when given, is filled with each query's line number in the file (for provenance).
    """
    path = Path(path)
    queries: list[str] = []
    metrics: list[float] = []
    relevant: list[list[str]] = []
    label_kind: str | None = None
    first_line = 0
    for line, obj in read_jsonl(path):
        q = obj.get("query", obj.get("text"))
        if not isinstance(q, str) or not q.strip():
            raise DatasetError(f"{path}:{line}: row has no non-empty string field 'query'; each {role} row needs one")
        kind = "metric" if "metric" in obj else "relevant" if "relevant" in obj else None
        if role == "traffic":
            kind = None
        if not queries:
            label_kind, first_line = kind, line
        elif kind != label_kind:
            raise DatasetError(f"{path}:{line}: mismatched fields: this row has {kind or 'no label'!r} but line "
                               f"{first_line} has {label_kind or 'no label'!r}; give 'metric' (or 'relevant') on every "
                               "eval row or on none")
        if kind == "metric":
            v = obj["metric"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise DatasetError(f"{path}:{line}: 'metric' must be a finite number, got {v!r}")
            metrics.append(float(v))
        elif kind == "relevant":
            v = obj["relevant"]
            if not isinstance(v, list) or not v or not all(isinstance(x, (str, int)) for x in v):
                raise DatasetError(f"{path}:{line}: 'relevant' must be a non-empty list of document ids, got {v!r}")
            relevant.append([str(x) for x in v])
        queries.append(q.strip())
        if lines is not None:
            lines.append(line)
    if not queries:
        raise DatasetError(f"{path}: empty {role} log; need one JSON object per line with a 'query' field")
    if len(queries) < 10:
        raise DatasetError(f"{path}: only {len(queries)} {role} queries; the two-sample tests need at least 10 per side")
    return queries, (metrics if label_kind == "metric" else None), (relevant if label_kind == "relevant" else None)


def _bm25_metric(queries: list[str], relevant: list[list[str]], corpus: Path) -> list[float]:
    from bench.eval.metrics import evaluate, run_from_results
    from data import load_beir, load_documents_jsonl
    from retrieval.retrievers import BM25Retriever

    corpus = Path(corpus)
    docs = load_documents_jsonl(corpus / "corpus.jsonl" if corpus.is_dir() else corpus)
    ids = {d.id for d in docs}
    missing = sorted({r for rel in relevant for r in rel} - ids)
    if missing:
        raise DatasetError(f"{corpus}: {len(missing)} relevant ids of the eval log are not in the corpus (first: {missing[:3]})")
    qids = [f"q{i}" for i in range(len(queries))]
    run = run_from_results(qids, BM25Retriever().index(docs).search(queries, 10), docs)
    _, per = evaluate({q: {d: 1 for d in rel} for q, rel in zip(qids, relevant)}, run, ("ndcg@10",), per_query=True)
    return [per["ndcg@10"][q] for q in qids]


def diagnose(eval_q: list[str], traffic_q: list[str], eval_emb: np.ndarray, traffic_emb: np.ndarray,
             eval_metric: list[float] | None, n_clusters: int = 8, n_label: int = 20, seed: int = 0) -> dict:
    """The report as a dict (drift tests, grown clusters, estimate or refusal, queries to label)."""
    from monitor.drift import MMDDrift
    from monitor.eval_drift import ClassifierDrift, grown_clusters, importance_weighted_estimate, pick_for_labelling

    e, t = eval_emb.astype(np.float64), traffic_emb.astype(np.float64)
    tests = {}
    for name, det in (("novelty (nearest-eval distance)", ClassifierDrift(e, model="distance", k=1, tail_test="exceedance",
                                                                          seed=seed)),
                      ("domain classifier (logistic)", ClassifierDrift(e, seed=seed)),
                      ("mmd", MMDDrift(e, n_permutations=200, seed=seed))):
        r = det.predict(t)
        tests[name] = {"is_drift": bool(r.is_drift), "statistic": float(r.statistic), "p_val": float(r.p_val),
                       "threshold": r.threshold}
    clusters = [c._asdict() for c in grown_clusters(e, t, eval_q, traffic_q, n_clusters=n_clusters, seed=seed)]
    est = None
    if eval_metric is not None:
        r = importance_weighted_estimate(e, np.asarray(eval_metric), t, seed=seed, model="knn", k=20)
        est = {"refused": r.is_refused, "estimate": None if r.is_refused else r.estimate,
               "interval": None if r.is_refused else [r.lower, r.upper], "ess": None if r.is_refused else r.ess,
               "stale": float(np.mean(eval_metric)), "uncovered_share": r.uncovered_share, "message": r.message}
    plan = pick_for_labelling(e, t, min(n_label, len(t)), n_clusters=n_clusters, seed=seed)
    to_label = [{"traffic_line_index": int(i), "query": traffic_q[int(i)], "cluster": int(c), "uncovered": bool(u)}
                for i, c, u in zip(plan.indices, plan.cluster, plan.uncovered)]
    return {"n_eval": len(eval_q), "n_traffic": len(traffic_q), "tests": tests, "clusters": clusters,
            "estimate": est, "uncovered_share": plan.uncovered_share, "to_label": to_label}


def render(rep: dict) -> str:
    lines = [f"# Eval drift: {rep['n_eval']} eval queries vs {rep['n_traffic']} traffic queries", "",
             "| test | drift | statistic | p-value |", "|---|---|---|---|"]
    for name, r in rep["tests"].items():
        lines.append(f"| {name} | {'YES' if r['is_drift'] else 'no'} | {r['statistic']:.4f} | {r['p_val']:.4g} |")
    lines += ["", "## Clusters that grew or appeared", "", "| growth | eval share | traffic share | new | top terms | examples |",
              "|---|---|---|---|---|---|"]
    for c in rep["clusters"]:
        if c["growth"] > 0:
            lines.append(f"| {c['growth']:+.2f} | {c['reference_share']:.2f} | {c['window_share']:.2f} | "
                         f"{'NEW' if c['is_new'] else ''} | {', '.join(c['top_terms'])} | "
                         f"{' / '.join(x[:60] for x in c['examples'])} |")
    lines += ["", "## Today's metric", ""]
    est = rep["estimate"]
    if est is None:
        lines.append("The eval log carries no labels ('metric' or 'relevant'): no estimate.")
    else:
        lines.append(est["message"] if est["refused"] else
                     f"Reweighted estimate {est['estimate']:.3f} [{est['interval'][0]:.3f}, {est['interval'][1]:.3f}], "
                     f"ESS {est['ess']:.0f} of {rep['n_eval']}; stale eval metric {est['stale']:.3f}; "
                     f"{100 * est['uncovered_share']:.1f}% of traffic uncovered.")
    lines += ["", f"## Label next ({100 * rep['uncovered_share']:.1f}% of traffic lies outside the eval set's support)", ""]
    lines += [f"{k + 1}. {'[uncovered] ' if r['uncovered'] else ''}(cluster {r['cluster']}) {r['query']}"
              for k, r in enumerate(rep["to_label"])]
    return "\n".join(lines) + "\n"


def to_label_rows(rep: dict, traffic: Path, traffic_lines: list[int], eval_path: Path) -> list[dict]:
    """The queries to label as JSONL rows ready for a labeller and for appending to the eval set.

    Each row: ``query``, an empty ``relevant`` to fill, and ``provenance`` (traffic file and line, why
    it was picked, its cluster, and the eval set it refreshes: file + sha256 prefix), so the next eval
    set version (old rows + these, labelled) says where every row came from.
    """
    import hashlib

    digest = hashlib.sha256(Path(eval_path).read_bytes()).hexdigest()[:12]
    return [{"query": r["query"], "relevant": None,
             "provenance": {"source": "traffic", "file": str(traffic), "line": traffic_lines[r["traffic_line_index"]],
                            "reason": "uncovered" if r["uncovered"] else "stratified", "cluster": r["cluster"],
                            "refreshes_eval": {"file": str(eval_path), "sha256": digest}}}
            for r in rep["to_label"]]


def _cmd(args: argparse.Namespace) -> int:
    eval_q, metric, relevant = read_query_log(args.eval, "eval")
    traffic_lines: list[int] = []
    traffic_q, _, _ = read_query_log(args.traffic, "traffic", traffic_lines)
    if relevant is not None:
        if args.corpus is None:
            raise DatasetError(f"{args.eval}: eval rows carry 'relevant' ids; give --corpus DIR (BEIR corpus.jsonl) to score them")
        metric = _bm25_metric(eval_q, relevant, args.corpus)
    from registry import load_embedder

    emb = load_embedder(args.embedder)
    rep = diagnose(eval_q, traffic_q, emb.encode_queries(eval_q), emb.encode_queries(traffic_q), metric,
                   n_clusters=args.clusters, n_label=args.label, seed=args.seed)
    md = render(rep)
    print(md)
    if args.out:
        from bench.report import write_results

        write_results(args.out, {"eval": str(args.eval), "traffic": str(args.traffic), "corpus": str(args.corpus),
                                 "embedder": args.embedder, "clusters": args.clusters, "seed": args.seed},
                      {"tests": rep["tests"], "estimate": rep["estimate"], "uncovered_share": rep["uncovered_share"]},
                      md, clusters=rep["clusters"], to_label=rep["to_label"])
        log.info(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    if args.to_label_out:
        rows = to_label_rows(rep, args.traffic, traffic_lines, args.eval)
        Path(args.to_label_out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        log.info(f"wrote {len(rows)} queries to label to {args.to_label_out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("eval-drift", help="is the eval set still like traffic? estimate today's metric, what to label (I)")
    p.add_argument("--eval", required=True, type=Path, help="JSONL of eval queries: {query[, metric | relevant]}")
    p.add_argument("--traffic", required=True, type=Path, help="JSONL of traffic queries: {query[, timestamp]}")
    p.add_argument("--corpus", type=Path, default=None, help="BEIR folder (corpus.jsonl) to score 'relevant' eval rows with BM25")
    p.add_argument("--embedder", default="minilm", help="registry embedder name")
    p.add_argument("--clusters", type=int, default=8)
    p.add_argument("--label", type=int, default=20, help="traffic queries to propose for labelling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON report (.md beside it)")
    p.add_argument("--to-label-out", type=Path, default=None,
                   help="JSONL of the queries to label, with provenance (traffic file:line, reason, eval set sha256)")
    p.set_defaults(func=_cmd)
