"""``ragfix diagnose threshold``: where does a cutoff land in precision and recall, per cohort (III)?

Given scored, labelled data and a cutoff (a round number, or the one in a spec), prints precision,
recall and flag rate with exact bounds overall and per cohort. With ``--spec`` it also checks the
scores against the spec: the scorer fingerprint (``--scorer-fingerprint``) and the score
distribution (one-sample KS and PSI against the spec's quantiles) -- the guard's verdict.
"""
from __future__ import annotations

import argparse
import json
from bench.argtypes import finite_float

__all__ = ["add_parser"]


def _cmd(args: argparse.Namespace) -> int:
    from bench.calibrate_cli import read_scores, summary_lines
    from cascade.thresholds import ThresholdGuard, ThresholdSpec, achieved

    scores, labels, cohorts = read_scores(args.scores, args.score_field, args.label_field, args.cohort_field)
    spec = ThresholdSpec.load(args.spec) if args.spec else None
    threshold = args.threshold if args.threshold is not None else (spec.threshold if spec else None)
    direction = spec.direction if spec and args.threshold is None else args.direction
    if threshold is None:
        raise ValueError("give --threshold, or --spec to diagnose the spec's threshold")
    report: dict = {"threshold": threshold, "direction": direction}
    if labels is not None:
        a = achieved(scores, labels, threshold, direction, args.confidence, cohorts)
        report["achieved"] = a
        print(f"cutoff {threshold:.6g} (flag score {'>=' if direction == 'above' else '<='} it) "
              f"[{int(args.confidence * 100)}% Clopper-Pearson]:")
        print("\n".join(summary_lines(a)))
    verdict = 0
    if spec is not None:
        fp = args.scorer_fingerprint or spec.scorer_fingerprint
        guard = ThresholdGuard(spec, fp)  # raises ScorerMismatchError (exit 2) for another scorer
        d = guard.predict(scores)
        report["guard"] = {"is_drift": d.is_drift, "ks": d.statistic, "ks_p_val": d.p_val, **d.meta}
        print(f"guard: {'DRIFT' if d.is_drift else 'ok'} -- KS {d.statistic:.3f} (p={d.p_val:.2g}), "
              f"PSI {d.meta['psi']:.3f}; live flag rate {d.meta['live_flag_rate']:.3f} vs spec {d.meta['spec_flag_rate']}")
        verdict = 1 if d.is_drift else 0
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return verdict


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.calibrate_cli import add_scores_args
    from pathlib import Path

    p = sub.add_parser("threshold", help="precision/recall of a cutoff per cohort; spec guard check (III)")
    add_scores_args(p)
    p.add_argument("--threshold", type=finite_float, default=None, help="cutoff to diagnose (default: the spec's)")
    p.add_argument("--spec", type=Path, default=None, help="a ThresholdSpec JSON to check the scores against")
    p.add_argument("--scorer-fingerprint", default=None, help="fingerprint of the scorer that produced --scores")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    p.set_defaults(func=_cmd)
