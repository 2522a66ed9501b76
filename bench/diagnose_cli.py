"""``ragfix diagnose ...``: find a failure mode on the user's own data.

Each diagnostic is a module in ``DIAGNOSE_MODULES`` exposing ``add_parser(subparsers)`` and setting
``func`` with ``set_defaults``; adding ``ragfix diagnose context-rot`` is one line here.
"""
from __future__ import annotations

import argparse

from bench.cli_groups import add_group

__all__ = ["add_parser", "DIAGNOSE_MODULES"]

DIAGNOSE_MODULES = ["bench.diagnose_threshold", "bench.diagnose_answers", "bench.context_cli:add_diagnose_parser",
                    "bench.diagnose_eval_drift"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_group(sub, "diagnose", "diagnostics: find a failure mode on your own data", DIAGNOSE_MODULES)
