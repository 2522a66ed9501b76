"""``ragfix diagnose threshold``: where does a cutoff land in precision and recall, per cohort (III)?

Given scored, labelled data and a cutoff (a round number, or the one in a spec), prints precision,
recall and flag rate with exact bounds overall and per cohort. With ``--spec`` it also checks the
scores against the spec -- the guard's verdict:

1. The scorer. Its fingerprint is computed from the model files (``--scorer NAME``, or the spec's own
   ``scorer_name`` when that is a registry name or a folder: swapped weights behind the same name are
   caught); ``--scorer-fingerprint`` passes one by hand. With none of these the check refuses (exit 2)
   rather than assume the scorer is unchanged.
2. On a fingerprint change the guard never reports ok from scores alone (a swapped model with the same
   score distribution can lose most of its recall at the cutoff): with labels in ``--scores`` (an
   audit set) it re-checks the spec's target at the spec's threshold and passes only if the target's
   bound is met; otherwise it asks for re-derivation (exit 3).
3. The score distribution (one-sample KS and PSI against the spec's quantiles).
"""
from __future__ import annotations

import argparse
import json
import logging

from bench.cli.argtypes import finite_float

__all__ = ["add_parser", "EXIT_STATUS"]

log = logging.getLogger(__name__)

EXIT_STATUS = """exit status (with --spec):
  0  ok: same scorer, score distribution as in the spec (or: another scorer, but a labelled audit set
     in --scores still meets the spec's target at its bound)
  1  drift: same scorer, but the live score distribution moved (KS or PSI fired)
  2  bad input, or the scorer cannot be identified (no --scorer, --scorer-fingerprint or usable spec scorer_name)
  3  scorer changed: the spec was derived for another model; re-derive the threshold (no labels to
     re-check on, a cost target, or the audit set misses the target)"""


def _cmd(args: argparse.Namespace) -> int:
    from bench.cli.calibrate import read_scores, summary_lines
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
        fp, fp_from = _live_fingerprint(args, spec)
        report["scorer"] = {"fingerprint": fp, "from": fp_from, "spec_fingerprint": spec.scorer_fingerprint}
        if fp != spec.scorer_fingerprint:
            verdict = _scorer_changed(spec, fp, fp_from, scores, labels, report)
            _write(args, report)
            return verdict
        guard = ThresholdGuard(spec, fp)
        d = guard.predict(scores)
        report["guard"] = {"is_drift": d.is_drift, "ks": d.statistic, "ks_p_val": d.p_val, **d.meta}
        print(f"guard: {'DRIFT' if d.is_drift else 'ok'} -- KS {d.statistic:.3f} (p={d.p_val:.2g}), "
              f"PSI {d.meta['psi']:.3f}; live flag rate {d.meta['live_flag_rate']:.3f} vs spec {d.meta['spec_flag_rate']}")
        verdict = 1 if d.is_drift else 0
    _write(args, report)
    return verdict


def _write(args: argparse.Namespace, report: dict) -> None:
    if args.out:
        from bench.report import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=2, default=str) + "\n")
        log.info(f"wrote {args.out}")


def _live_fingerprint(args: argparse.Namespace, spec) -> tuple[str, str]:
    """The fingerprint of the scorer behind ``--scores``, and where it came from."""
    from registry import UnknownModelError, model_fingerprint

    if args.scorer_fingerprint:
        return args.scorer_fingerprint, "--scorer-fingerprint"
    name = args.scorer or spec.scorer_name
    if not name:
        raise ValueError("the guard must know which model produced --scores: pass --scorer NAME (registry name or "
                         "folder; its fingerprint is computed from its files) or --scorer-fingerprint")
    try:
        return model_fingerprint(name, args.scorer_kind), f"model files of {name!r} ({args.scorer_kind})"
    except (UnknownModelError, FileNotFoundError) as exc:
        raise ValueError(f"cannot fingerprint scorer {name!r} (from {'--scorer' if args.scorer else 'the spec'}): "
                         f"{exc}; pass --scorer NAME or --scorer-fingerprint") from None


def _scorer_changed(spec, fp: str, fp_from: str, scores, labels, report: dict) -> int:
    """A scorer other than the spec's: ok only if a labelled audit set still meets the target."""
    head = (f"guard: SCORER CHANGED -- spec made for {spec.scorer_fingerprint!r}, scores come from {fp!r} ({fp_from})")
    if labels is None:
        report["guard"] = {"scorer_changed": True, "rechecked": False, "verdict": "re-derive"}
        print(head + "; no labels in --scores to re-check the target on. Re-derive the threshold with "
              "`ragfix calibrate threshold` on labelled data scored by the new model (exit 3)")
        return 3
    met, ach = spec.recheck(scores, labels)
    report["guard"] = {"scorer_changed": True, "rechecked": True, "target": spec.target, "audit": ach,
                       "verdict": "ok-on-audit" if met else "re-derive"}
    metric = spec.target.get("metric")
    if met is None:
        print(head + f"; a {metric} target cannot be re-checked on an audit set: re-derive the threshold (exit 3)")
        return 3
    what = (f"{metric} {ach[metric]} [{ach[metric + '_lo']}, {ach[metric + '_hi']}] at threshold {spec.threshold:.6g} "
            f"on {ach['n']} labelled rows, target {spec.target['value']} ({spec.target.get('bound', 'lower')} bound)")
    if met:
        print(head + f"; re-checked on the audit set: {what}: met. ok for now; re-derive to record the new fingerprint")
        return 0
    print(head + f"; re-checked on the audit set: {what}: NOT met. Re-derive the threshold (exit 3)")
    return 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.cli.calibrate import add_scores_args
    from pathlib import Path

    p = sub.add_parser("threshold", help="precision/recall of a cutoff per cohort; spec guard check (III)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_STATUS)
    add_scores_args(p)
    p.add_argument("--threshold", type=finite_float, default=None, help="cutoff to diagnose (default: the spec's)")
    p.add_argument("--spec", type=Path, default=None, help="a ThresholdSpec JSON to check the scores against")
    p.add_argument("--scorer", default=None,
                   help="registry name or folder of the model that produced --scores; its fingerprint is computed "
                        "from its files (default: the spec's scorer_name, when it names a model)")
    p.add_argument("--scorer-kind", default="cross-encoder", choices=("cross-encoder", "embedder", "faithfulness", "llm"),
                   help="registry kind of --scorer")
    p.add_argument("--scorer-fingerprint", default=None, help="fingerprint of the scorer that produced --scores, "
                                                              "given by hand (overrides --scorer)")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    p.set_defaults(func=_cmd)
