"""The ``ragfix`` command line: ``demo``, ``bench <name>``, and (as they land) ``train``, ``diagnose``, ``report``."""
from __future__ import annotations

import argparse
import os
import sys

from bench.cli_groups import add_group, register_modules

__all__ = ["main", "build_parser"]

# Each module exposes add_parser(subparsers); adding a command is one line here.
# BENCH_MODULES register under `ragfix bench ...`; COMMAND_MODULES register top-level commands
# (e.g. `ragfix calibrate ...`, `ragfix diagnose ...`, `ragfix train ...`, `ragfix report ...`).
BENCH_MODULES = ["bench.bench_retrieval", "bench.bench_thresholds", "bench.bench_cascade", "bench.bench_rerank",
                 "bench.bench_specialists", "bench.bench_pipeline", "bench.bench_faithfulness", "bench.context_cli:add_bench_parser",
                 "bench.bench_eval_drift", "bench.bench_judge_spend", "bench.bench_distill_drift", "bench.bench_serve"]
COMMAND_MODULES = ["bench.demo", "bench.calibrate_cli", "bench.diagnose_cli", "bench.train_cli", "bench.report_cli",
                   "bench.distill_cli", "bench.perf_cli", "bench.cache_cli", "serve.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragfix", description="Fixes for production RAG failure modes, with benchmarks on real data.")
    sub = parser.add_subparsers(dest="command", required=True)
    register_modules(sub, COMMAND_MODULES)
    add_group(sub, "bench", "benchmarks: baseline and fix side by side, JSON + Markdown", BENCH_MODULES)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from data import DatasetError
    from registry import UnknownModelError

    try:
        return int(args.func(args) or 0)
    except (DatasetError, UnknownModelError, FileNotFoundError, ValueError) as exc:
        print(f"ragfix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
