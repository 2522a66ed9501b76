"""``ragfix calibrate threshold``: derive a threshold from a target on the user's own scored, labelled data.

Input: a JSONL file (one ``{"score": float, "label": 0|1, "cohort": str?}`` per line) or a CSV with a
header holding ``score``, ``label`` and optionally a cohort column. Output: a versioned
:class:`~cascade.thresholds.ThresholdSpec` JSON, and a one-screen summary of what the threshold
achieves with its bounds, overall and per cohort. Other ``calibrate`` subcommands register by
appending their module to ``CALIBRATE_MODULES`` (each exposes ``add_parser(subparsers)``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np

from bench.cli.argtypes import fraction, non_negative_float, open_fraction
from data import DatasetError, csv_rows, read_jsonl

__all__ = ["read_scores", "add_parser", "CALIBRATE_MODULES", "summary_lines"]

log = logging.getLogger(__name__)

CALIBRATE_MODULES: list[str] = []


def read_scores(path: Path | str, score_field: str = "score", label_field: str = "label",
                cohort_field: str | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(scores, labels or None, cohorts or None)`` from JSONL or CSV; NaN scores are kept (callers refuse them).

    UTF-8 (a BOM is accepted). Labels must be 0 or 1 (``1.0`` and ``true`` count): a label such as
    ``0.7``, ``2``, ``Infinity`` or ``NaN`` raises :class:`DatasetError` naming the file and the line,
    rather than being truncated; so do non-UTF-8 bytes and CSV fields over the csv module's size limit.
    """
    path = Path(path)
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        rows = list(csv_rows(path, header=True))
    else:
        rows = list(read_jsonl(path))
    if not rows:
        raise DatasetError(f"{path}: no rows; expected one {{'{score_field}': ..., '{label_field}': ...}} per line")
    scores, labels, cohorts = [], [], []
    for i, r in rows:
        if score_field not in r:
            raise DatasetError(f"{path}:{i}: no {score_field!r} field (fields: {', '.join(map(str, r))})")
        try:
            scores.append(float(r[score_field]) if r[score_field] not in (None, "") else math.nan)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}:{i}: score {r[score_field]!r} is not a number") from None
        if label_field in r and r[label_field] not in (None, ""):
            labels.append(_binary_label(r[label_field], path, i))
        if cohort_field:
            cohorts.append(str(r.get(cohort_field, "")))
    lab = np.array(labels) if labels else None
    if lab is not None and lab.size != len(scores):
        raise DatasetError(f"{path}: {len(scores) - lab.size} rows lack a {label_field!r}; label every row or none")
    return np.array(scores, dtype=np.float64), lab, (np.array(cohorts, dtype=object) if cohort_field else None)


def _binary_label(value, path: Path, line: int) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return int(value.strip().lower() == "true")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}:{line}: label {value!r} is not a number; labels are 0 or 1") from None
    if v not in (0.0, 1.0):
        raise DatasetError(f"{path}:{line}: label {value!r} is not 0 or 1; thresholds are derived from binary labels "
                           "(map graded labels to 0/1 yourself, e.g. relevant = grade >= 1)")
    return int(v)


def summary_lines(a: dict) -> list[str]:
    def fmt(name: str, m: dict) -> str:
        p = "n/a" if m.get("precision") is None else f"{m['precision']:.3f} [{m['precision_lo']:.3f}, {m['precision_hi']:.3f}]"
        r = "n/a" if m.get("recall") is None else f"{m['recall']:.3f} [{m['recall_lo']:.3f}, {m['recall_hi']:.3f}]"
        return f"  {name:<24} n={m['n']:<6} positives={m['n_pos']:<5} flagged={m['n_flagged']:<6} precision {p}  recall {r}"

    lines = [fmt("all", a)]
    for c, m in (a.get("per_cohort") or {}).items():
        lines.append(fmt(c, m))
    return lines


def _cmd_threshold(args: argparse.Namespace) -> int:
    from cascade.thresholds import ThresholdSpec

    if not (args.scorer or args.scorer_fingerprint):
        raise ValueError("give --scorer NAME (the model that produced the scores; fingerprint computed from its files) "
                         "or --scorer-fingerprint")
    if args.scorer and not args.scorer_fingerprint:
        from registry import model_fingerprint

        args.scorer_fingerprint = model_fingerprint(args.scorer, args.scorer_kind)
        args.scorer_name = args.scorer_name or args.scorer
    scores, labels, cohorts = read_scores(args.scores, args.score_field, args.label_field, args.cohort_field)
    if labels is None:
        raise ValueError(f"{args.scores}: no {args.label_field!r} field; deriving a threshold needs labelled data")
    if args.metric == "cost":
        spec = ThresholdSpec.fit_cost(scores, labels, cost_fp=args.cost_fp, cost_fn=args.cost_fn,
                                      scorer_fingerprint=args.scorer_fingerprint, direction=args.direction,
                                      cohorts=cohorts, scorer_name=args.scorer_name, task=args.task)
    else:
        if args.target is None:
            raise ValueError("--target is required with --metric precision or recall")
        spec = ThresholdSpec.fit(scores, labels, metric=args.metric, target=args.target,
                                 scorer_fingerprint=args.scorer_fingerprint, direction=args.direction,
                                 confidence=args.confidence, cohorts=cohorts, scorer_name=args.scorer_name,
                                 task=args.task)
    spec.save(args.out)
    print(f"threshold {spec.threshold:.6g} (flag score {'>=' if spec.direction == 'above' else '<='} it) for "
          f"{json.dumps(spec.target)}; on the calibration data [{int(args.confidence * 100)}% Clopper-Pearson]:")
    print("\n".join(summary_lines(spec.achieved)))
    log.info(f"wrote {args.out}")
    return 0


def add_scores_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, type=Path, help="JSONL or CSV with score, label[, cohort]")
    p.add_argument("--score-field", default="score")
    p.add_argument("--label-field", default="label")
    p.add_argument("--cohort-field", default=None, help="field holding a cohort name (query length bucket, segment...)")
    p.add_argument("--direction", choices=("above", "below"), default="above",
                   help="flag items with score >= threshold (above) or <= threshold (below)")
    p.add_argument("--confidence", type=open_fraction, default=0.95)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.cli.groups import register_modules

    cal = sub.add_parser("calibrate", help="derive thresholds and calibration maps from labelled data")
    cal_sub = cal.add_subparsers(dest="calibrate", required=True)
    p = cal_sub.add_parser("threshold", help="threshold from a precision/recall/cost target, saved as a versioned spec (III)")
    add_scores_args(p)
    p.add_argument("--metric", choices=("precision", "recall", "cost"), required=True)
    p.add_argument("--target", type=fraction, default=None, help="target value of --metric (precision/recall)")
    p.add_argument("--cost-fp", type=non_negative_float, default=1.0, help="cost of a false positive (--metric cost)")
    p.add_argument("--cost-fn", type=non_negative_float, default=1.0, help="cost of a false negative (--metric cost)")
    p.add_argument("--scorer", default=None,
                   help="registry name or folder of the model that produced the scores: its fingerprint is computed "
                        "from its files and recorded, with the name, in the spec (what the guard later checks)")
    p.add_argument("--scorer-kind", default="cross-encoder", choices=("cross-encoder", "embedder", "faithfulness", "llm"))
    p.add_argument("--scorer-fingerprint", default=None,
                   help="fingerprint of the model that produced the scores, given by hand (instead of --scorer)")
    p.add_argument("--scorer-name", default="")
    p.add_argument("--task", default="")
    p.add_argument("--out", required=True, type=Path, help="spec JSON to write")
    p.set_defaults(func=_cmd_threshold)
    register_modules(cal_sub, CALIBRATE_MODULES)
