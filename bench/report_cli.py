"""``ragfix report ...``: reports built from results files and ledgers. Modules in REPORT_MODULES add subcommands."""
from __future__ import annotations

import argparse
import importlib

__all__ = ["add_parser", "REPORT_MODULES"]

REPORT_MODULES = ["bench.readme", "bench.report_cost"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="reports: README tables, cost by task")
    rsub = p.add_subparsers(dest="report", required=True)
    for mod in REPORT_MODULES:
        importlib.import_module(mod).add_parser(rsub)
