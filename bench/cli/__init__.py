"""The ``ragfix`` command line: ``demo``, ``bench <name>``, and (as they land) ``train``, ``diagnose``, ``report``."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from bench.cli.groups import add_group, register_modules

__all__ = ["main", "build_parser"]

# Each module exposes add_parser(subparsers); adding a command is one line here.
# BENCH_MODULES register under `ragfix bench ...`; COMMAND_MODULES register top-level commands
# (e.g. `ragfix calibrate ...`, `ragfix diagnose ...`, `ragfix train ...`, `ragfix report ...`).
BENCH_MODULES = ["bench.benchmarks.bench_retrieval", "bench.benchmarks.bench_thresholds", "bench.benchmarks.bench_cascade",
                 "bench.benchmarks.bench_rerank", "bench.benchmarks.bench_specialists", "bench.benchmarks.bench_pipeline",
                 "bench.benchmarks.bench_faithfulness", "bench.benchmarks.bench_context:add_bench_parser",
                 "bench.benchmarks.bench_eval_drift", "bench.benchmarks.bench_judge_spend", "bench.benchmarks.bench_distill_drift",
                 "bench.benchmarks.bench_serve", "bench.benchmarks.bench_large_index", "bench.benchmarks.bench_scale"]
COMMAND_MODULES = ["bench.benchmarks.demo", "bench.cli.calibrate", "bench.cli.diagnose", "bench.cli.train", "bench.cli.report",
                   "bench.cli.distill", "bench.cli.adapt", "bench.cli.select", "bench.cli.perf", "bench.cli.cache", "serve.cli", "bench.cli.scale"]

OWN_LOGGERS = ("bench", "data", "registry", "pipeline", "serve", "retrieval", "rerank", "generate", "cascade", "distill",
               "monitor", "scale")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragfix", description="Fixes for production RAG failure modes, with benchmarks on real data.")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true", help="debug messages too (on stderr)")
    talk.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only: no status lines, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    register_modules(sub, COMMAND_MODULES)
    add_group(sub, "bench", "benchmarks: baseline and fix side by side, JSON + Markdown", BENCH_MODULES)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    # The one logging setup: status lines and progress bars (bench.report.progress) on stderr, reports on stdout.
    # Other libraries stay at WARNING unless --verbose; ragfix's own packages talk at INFO unless --quiet.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    from data import DatasetError
    from registry import UnknownModelError

    try:
        return int(args.func(args) or 0)
    except (DatasetError, UnknownModelError, FileNotFoundError, ValueError) as exc:
        print(f"ragfix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
