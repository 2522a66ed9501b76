"""``ragfix report ...``: reports built from results files and ledgers. Modules in REPORT_MODULES add subcommands."""
from __future__ import annotations

import argparse

from bench.cli.groups import add_group

__all__ = ["add_parser", "REPORT_MODULES"]

REPORT_MODULES = ["bench.report.readme", "bench.report.cost"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_group(sub, "report", "reports: README tables, cost by task", REPORT_MODULES)
