"""How many candidates ``best`` must pass to the cross-encoder, and which final order, read off a score dump (VIII).

``python -m bench.probes.probe_best_keep runs/dump_scifact.pkl [--keeps 8,10,12,16,20] [--out R.json]``

Input: the pickle ``ragfix bench rerank --quality-only --dump-scores`` writes (per query: the naive fp32
logits over all K, and ``best``'s pruner score, cosine and BM25 score over all K, the kept positions and
their bf16 logits). For each ``keep`` <= the dumped one it rebuilds ``best``'s ranking from the top
``keep`` by pruner score (their logits are the dumped ones: a pair's bf16 logit does not depend on the
other pairs in its batch beyond rounding) under both final rules (``fused``: z-score CombSUM of logit +
BM25 + cosine over the kept; ``ce``: logit alone), and also a per-query ``keep`` from the pruner's score
distribution (candidates whose pruner score is within ``--gap`` standard deviations of the top one,
clipped to [``--min-keep``, dumped keep]). Reports nDCG@10 against naive with the paired bootstrap 95%
interval (``bench.benchmarks.bench_rerank.ndcg_diff_vs_naive``), top-10 overlap and mean pairs.
No model runs here: seconds.
"""
from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np

from bench.cli.argtypes import positive_int

__all__ = ["sweep", "main"]


def _run_from(ids, order) -> dict[str, float]:
    return {ids[int(j)]: float(len(order) - r) for r, j in enumerate(order)}


def _best_order(rec: dict, keep: int, final: str) -> np.ndarray:
    from rerank.fusion import zsum_scores

    # the dumped logits are in the pruner's order of the kept candidates (PrunedRerank's signals["ce_kept"])
    by_pruner = np.argsort(-np.asarray(rec["pruner"], dtype=np.float64), kind="stable")
    ce_kept = np.asarray(rec["ce_kept"], dtype=np.float64)
    if set(by_pruner[: len(ce_kept)].tolist()) != set(np.asarray(rec["kept"]).tolist()):
        raise ValueError("probe_best_keep: the dumped pruner scores do not reproduce the kept set (ties rounded by "
                         "the float32 dump?); dump again")
    logit = dict(zip(by_pruner[: len(ce_kept)].tolist(), ce_kept))
    top = by_pruner[:keep]
    ce = np.array([logit[int(j)] for j in top])
    if final == "fused":
        score = zsum_scores({"ce": ce, "first_stage": np.asarray(rec["bm25"], dtype=np.float64)[top],
                             "dense": np.asarray(rec["dense"], dtype=np.float64)[top]})
    else:
        score = ce
    return np.concatenate([top[np.argsort(-score, kind="stable")], by_pruner[keep:]])


def sweep(dump: dict, keeps: list[int], gaps: list[float], min_keep: int = 8) -> dict:
    """nDCG@10 / paired interval / overlap per (keep or gap rule, final) against naive."""
    from bench.benchmarks.bench_rerank import ndcg_diff_vs_naive
    from bench.eval.metrics import evaluate

    qtext_to_id = {t: q for q, t in dump["queries"].items()}
    recs = {qtext_to_id[t]: r for t, r in dump["scores"].items() if "kept" in r and "naive" in r}
    if not recs:
        raise ValueError("probe_best_keep: the dump has no query with both naive and best scores; run bench rerank "
                         "--quality-only --dump-scores with --variants naive,best")
    qids = sorted(recs)
    qrels = {q: dump["qrels"][q] for q in qids}
    dumped = min(len(r["kept"]) for r in recs.values())
    naive = {q: _run_from(recs[q]["ids"], np.argsort(-np.asarray(recs[q]["naive"]), kind="stable")) for q in qids}
    base = evaluate(qrels, naive, ("ndcg@10",), per_query=True)
    out = {"queries": len(qids), "dumped_keep": dumped, "naive_ndcg@10": base[0]["ndcg@10"], "rows": []}

    def top10(run):
        return set(sorted(run, key=run.get, reverse=True)[:10])

    def row(label, per_q_keep, final):
        runs = {q: _run_from(recs[q]["ids"], _best_order(recs[q], per_q_keep[q], final)) for q in qids}
        m = evaluate(qrels, runs, ("ndcg@10",), per_query=True)
        d = ndcg_diff_vs_naive(m[1]["ndcg@10"], base[1]["ndcg@10"], qids)
        ov = float(np.mean([len(top10(runs[q]) & top10(naive[q])) / 10 for q in qids]))
        out["rows"].append({"rule": label, "final": final, "mean_pairs": float(np.mean(list(per_q_keep.values()))),
                            "ndcg@10": m[0]["ndcg@10"], **d, "top10_overlap_naive": ov})

    for k in [k for k in keeps if k <= dumped]:
        for final in ("fused", "ce"):
            row(f"keep={k}", {q: k for q in qids}, final)
    for g in gaps:
        from rerank.precomputed import keep_count

        per = {q: keep_count(np.asarray(recs[q]["pruner"]), dumped, g, min_keep) for q in qids}  # as PrunedRerank(gap=g)
        for final in ("fused", "ce"):
            row(f"gap={g:g}", per, final)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", type=Path)
    ap.add_argument("--keeps", default="8,10,12,14,16,18,20")
    ap.add_argument("--gaps", default="1.5,2,2.5,3")
    ap.add_argument("--min-keep", type=positive_int, default=8)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--source", type=Path, default=None,
                    help="the results JSON of the run that wrote the dump (for dumps that do not carry its environment)")
    a = ap.parse_args(argv)
    if not a.dump.is_file():
        ap.error(f"{a.dump}: no such dump (make one with bench rerank --quality-only --dump-scores)")
    with open(a.dump, "rb") as fh:
        dump = pickle.load(fh)
    rep = sweep(dump, [int(k) for k in a.keeps.split(",")], [float(g) for g in a.gaps.split(",") if g.strip()], a.min_keep)
    print(f"{rep['queries']} queries, naive nDCG@10 {rep['naive_ndcg@10']:.4f}")
    for r in rep["rows"]:
        print(f"{r['rule']:>9} {r['final']:>5} pairs {r['mean_pairs']:5.1f} nDCG {r['ndcg@10']:.4f} diff {r['ndcg_diff']:+.4f} "
              f"[{r['ndcg_diff_ci95'][0]:+.4f}, {r['ndcg_diff_ci95'][1]:+.4f}] overlap {r['top10_overlap_naive']:.2f} "
              f"bar {'met' if r['ndcg_bar_met'] else 'NOT met'}")
    if a.out:
        from bench.report import write_results
        from retrieval.embedders import fingerprint_files

        source = dump.get("environment")
        if source is None and a.source is not None:
            source = json.loads(a.source.read_text(encoding="utf-8"))["environment"]
        if source is None:
            ap.error(f"{a.dump} carries no environment of the run that wrote it; pass --source RESULTS.json of that run")
        config = {"dump": str(a.dump), "dump_sha256": fingerprint_files([a.dump]), "keeps": a.keeps, "gaps": a.gaps,
                  "min_keep": a.min_keep, "source_command": source.get("command"), "source_commit": source.get("commit")}
        write_results(a.out, config, rep, models=source.get("models") or {})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
