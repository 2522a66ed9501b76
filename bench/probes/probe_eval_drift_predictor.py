"""Which label-free predictor the eval-drift estimate should use, chosen on development stories only (I).

``python -m bench.probes.probe_eval_drift_predictor [--seeds 100-139] [--ce-models reranker-l6,models/X] [--ce-tops 3,10] [--out R.json]``

The model-assisted estimate of ``ragfix bench eval-drift`` (:func:`monitor.eval_drift.model_assisted_estimate`)
is as good as its per-query predictor of nDCG@10. This probe builds the bench's stream and releases, then
compares predictor feature sets side by side on the same stories:

* ``retrieval``: :func:`bench.benchmarks.bench_eval_drift.retrieval_signals` (score gaps, cosines, agreement
  between releases) plus the cross-fitted mean metric of the 20 nearest eval queries (the round-3 predictor);
* ``retrieval+ce(MODEL)``, one per ``--ce-models`` entry: the same plus
  :func:`bench.benchmarks.bench_eval_drift.cross_encoder_signals` (that cross-encoder judging each release's top 3);
  ``retrieval+ce(MODEL,top=K)`` for each deeper ``--ce-tops`` entry: the judge reads the top K and adds the
  expected-DCG columns (the label-free twin of nDCG@K).

For each: the out-of-fold R^2 of the predictor on the eval set per shipped release, and over the seeded
development stories (default 100-139, never the reported 0-19) the estimate's absolute error in every covered
week where the stale offline metric is off by >= 0.05 (max, median, share within 0.03). No relevance label of
traffic reaches a predictor; the labels score the errors only.

Leakage check (``leakage``): the project's cross-encoders were trained on SciFact *train* qrels, and the stream
pools train and test claims, so on train claims the cross-encoder signal is not label-free. The probe fits
each feature set (cross-validated ridge, first release) on train claims and on test claims (never seen by the
cross-encoder) separately and reports the R^2 gain of adding the cross-encoder on each: a gain that holds
on the test claims is what a team whose reranker never saw its traffic's labels would get.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

__all__ = ["run_probe", "main"]

log = logging.getLogger(__name__)


def _seeds(spec: str) -> list[int]:
    a, _, b = spec.partition("-")
    lo, hi = int(a), int(b or a)
    if hi < lo:
        raise argparse.ArgumentTypeError(f"seeds {spec!r}: need LO-HI with LO <= HI")
    return list(range(lo, hi + 1))


def run_probe(seeds: list[int], ce_models: tuple[str, ...] = ("reranker-l6",), n_nq: int = 1500, n_eval: int = 300,
              window: int = 400, budget: int = 100, ce_tops: tuple[int, ...] = (3,)) -> dict:
    """``{"variants": {name: {"oof_r2": {release: r2}, "errors": [...], "max", "median", "within_003"}}, ...}``."""
    from sklearn.metrics import r2_score

    from bench.benchmarks import bench_eval_drift as b
    from monitor.eval_drift import PREDICTOR_SETTINGS, cross_fitted_predictions

    t0 = time.perf_counter()
    st = b.setup_stream(n_nq, n_eval, 0)
    d, ev, pool, nq, rel, ship = st.d, st.eval_idx, st.pool, st.nq, st.rel, st.ship
    t_ce = time.perf_counter()
    variants = {"retrieval": b.judged_signals(st, None)}
    for model in ce_models:
        for top in sorted(ce_tops, reverse=True):  # the deepest first: the shallower ones read its cached pairs
            name = f"retrieval+ce({model})" if top == 3 else f"retrieval+ce({model},top={top})"
            variants[name] = b.judged_signals(st, model, top)
    t_ce = time.perf_counter() - t_ce
    q = d.query_emb.astype(np.float64)
    out: dict = {"seeds": [seeds[0], seeds[-1]], "ce_models": list(ce_models), "ce_tops": list(ce_tops), "shipped": ship, "ce_seconds": round(t_ce, 1),
                 "variants": {}}
    for name, s in variants.items():
        r2 = {}
        for r in ship:
            pe, _ = cross_fitted_predictions(s[r][ev], rel[r][ev], s[r][pool], seed=0, eval_emb=q[ev], other_emb=q[pool],
                                             **PREDICTOR_SETTINGS)
            r2[r] = float(r2_score(rel[r][ev], pe))
        errs = []
        for seed in seeds:
            weeks, _ = b.run_story(d, {r: rel[r] for r in ship}, ev, pool, nq, window, budget, seed, signals=s)
            errs += [{"seed": seed, "week": w["week"], "error": abs(w["estimated"] - w["true"])}
                     for w in weeks if not w["refused"] and abs(w["offline"] - w["true"]) >= 0.05]
        e = np.array([x["error"] for x in errs])
        out["variants"][name] = {"oof_r2": r2, "weeks_compared": len(e), "max": float(e.max()) if len(e) else None,
                                 "median": float(np.median(e)) if len(e) else None,
                                 "within_003": float(np.mean(e <= 0.03)) if len(e) else None, "errors": errs}
        log.info("%s: R^2 %s; max %.4f median %.4f within 0.03 %.2f over %d weeks", name,
                 {k: round(v, 3) for k, v in r2.items()}, out["variants"][name]["max"] or 0,
                 out["variants"][name]["median"] or 0, out["variants"][name]["within_003"] or 0, len(e))
    out["leakage"] = _leakage(d, rel[ship[0]], variants, ship[0])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _leakage(d, metric: np.ndarray, variants: dict, release: str) -> dict:
    """Out-of-fold R^2 of each feature set on SciFact train claims vs test claims (see the module doc): the
    estimate's own ridge (:func:`monitor.eval_drift.cross_fitted_predictions`, 5 folds) fitted on each claim set alone."""
    from sklearn.metrics import r2_score

    from data import data_root, load_beir
    from monitor.eval_drift import cross_fitted_predictions

    test = {f"sf{q}" for q in load_beir(data_root() / "scifact", "test").qrels}
    qids = list(d.queries)
    sf = np.array([d.kind[q] == "scifact" for q in qids])
    is_test = np.array([q in test for q in qids])
    out: dict = {"release": release}
    for part, mask in (("train_claims_seen_by_ce", sf & ~is_test), ("test_claims_unseen", sf & is_test)):
        y = metric[mask]
        row: dict = {"n": int(mask.sum())}
        for name, s in variants.items():
            pred, _ = cross_fitted_predictions(s[release][mask], y, s[release][:0], seed=0)
            row[f"r2_{name}"] = float(r2_score(y, pred))
        row.update({f"r2_gain_{name}": row[f"r2_{name}"] - row["r2_retrieval"] for name in variants if name != "retrieval"})
        out[part] = row
    log.info("leakage check (%s): %s", release, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=_seeds, default=_seeds("100-139"), help="development story seeds LO-HI")
    p.add_argument("--ce-models", type=lambda v: tuple(x for x in v.split(",") if x), default=("reranker-l6",),
                   help="comma-separated cross-encoders (registry names or folders), one variant each")
    p.add_argument("--ce-tops", type=lambda v: tuple(int(x) for x in v.split(",") if x), default=(3,),
                   help="comma-separated depths of each release's ranking the cross-encoder judges, one variant each "
                        "(3: round 4's three columns; deeper adds the expected-DCG columns of cross_encoder_signals)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    res = run_probe(args.seeds, args.ce_models, ce_tops=args.ce_tops)
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "errors"} for k, v in res["variants"].items()}
    print(json.dumps({**{k: v for k, v in res.items() if k != "variants"}, "variants": summary}, indent=1))
    if args.out:
        from bench.report import write_results

        write_results(args.out, {"seeds": res["seeds"], "ce_models": list(args.ce_models), "ce_tops": list(args.ce_tops)},
                      {**summary, "leakage": res["leakage"]}, None, probe=res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
