"""``ragfix diagnose ...``: find a failure mode on the user's own data.

Each diagnostic is a module in ``DIAGNOSE_MODULES`` exposing ``add_parser(subparsers)`` and setting
``func`` with ``set_defaults``; adding ``ragfix diagnose context-rot`` is one line here.
"""
from __future__ import annotations

import argparse

from bench.cli.groups import add_group

__all__ = ["add_parser", "DIAGNOSE_MODULES"]

DIAGNOSE_MODULES = ["bench.probes.diagnose_threshold", "bench.probes.diagnose_answers", "bench.benchmarks.bench_context:add_diagnose_parser",
                    "bench.probes.diagnose_eval_drift"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_group(sub, "diagnose", "diagnostics: find a failure mode on your own data", DIAGNOSE_MODULES)
