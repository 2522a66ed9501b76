"""``ragfix perf record|check|proof``: latency regression guards for your own code and for ragfix's.

``record`` and ``check`` take your callables as ``module:attribute`` (zero-argument callables, importable
from the current folder); ``check`` exits 0 when within tolerance, 1 on a confirmed regression, 2 on
bad input or a missing baseline. ``proof`` runs the project's suite under load (:mod:`bench.benchmarks.perf_proof`).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Callable

from bench.cli.argtypes import non_negative_int, positive_float, positive_int

__all__ = ["add_parser", "load_callable"]


def load_callable(spec: str) -> Callable[[], object]:
    """``"pkg.module:name"`` -> the zero-argument callable it names (ValueError with what to do otherwise)."""
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"--workload/--reference take 'module:callable' (e.g. mybench:rerank_100), got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # the user's own module in the current folder
    try:
        obj = importlib.import_module(mod)
    except ImportError as exc:
        raise ValueError(f"cannot import {mod!r} for {spec!r}: {exc}; run from the folder that holds it or set PYTHONPATH") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{mod!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec!r} is not callable")
    return obj


def _guard(args):
    from perfguard import BaselineStore, Guard

    return Guard(BaselineStore(args.baseline), tolerance=args.tolerance, confirm=args.confirm)


def _record(args) -> int:
    ratio = _guard(args).record(args.name, load_callable(args.workload), load_callable(args.reference))
    print(f"{args.name}: recorded ratio {ratio:.4f} for this machine class in {args.baseline}")
    return 0


def _check(args) -> int:
    from perfguard.guard import MissingBaseline

    try:
        verdict = _guard(args).check(args.name, load_callable(args.workload), load_callable(args.reference))
    except MissingBaseline as exc:
        print(f"ragfix: error: {exc} (ragfix perf record ...)", file=sys.stderr)
        return 2
    print(verdict.message)
    return 0 if verdict.ok else 1


def _proof(args) -> int:
    from bench.benchmarks.perf_proof import DEFAULT_BASELINE, markdown, prove
    from bench.report import write_results

    metrics = prove(args.runs, args.load, args.unloaded_runs, args.baseline or DEFAULT_BASELINE, tolerance=args.tolerance,
                    log=logging.getLogger("bench.benchmarks.perf_proof").info)
    write_results(args.out, vars_config(args), metrics, markdown(metrics))
    print(markdown(metrics))
    return 0


def vars_config(args) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("func", "command", "perf")}


def add_parser(sub: argparse._SubParsersAction) -> None:
    perf = sub.add_parser("perf", help="latency regression guards (record, check, proof under load)")
    group = perf.add_subparsers(dest="perf", required=True)
    for name, fn, text in (("record", _record, "record a baseline ratio for this machine class"),
                           ("check", _check, "check against the baseline: exit 0 ok, 1 confirmed regression, 2 error")):
        p = group.add_parser(name, help=text)
        p.add_argument("--name", required=True, help="the workload's name in the baseline file")
        p.add_argument("--workload", required=True, help="module:callable under guard (zero arguments)")
        p.add_argument("--reference", required=True, help="module:callable doing the same kind of work at a fixed size")
        p.add_argument("--baseline", type=Path, default=Path("perf_baseline.json"))
        p.add_argument("--tolerance", type=positive_float, default=1.5)
        p.add_argument("--confirm", type=non_negative_int, default=2, help="re-measurements before a regression is declared")
        p.set_defaults(func=fn)
    p = group.add_parser("proof", help="catch and false-failure rates of the project's perf suite under CPU load")
    p.add_argument("--runs", type=positive_int, default=20)
    p.add_argument("--load", type=non_negative_int, default=1, help="busy-looping processes during the runs")
    p.add_argument("--unloaded-runs", type=non_negative_int, default=0, help="also this many runs with no load")
    p.add_argument("--baseline", type=Path, default=None)
    p.add_argument("--tolerance", type=positive_float, default=1.5)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_proof)
