"""``ragfix diagnose answers --log FILE.jsonl``: retrieval misses vs generation failures (II).

Reads a log of (query, passages, answer[, reference answers]) rows (format: :mod:`generate.audit`),
checks each answer with the faithfulness gate, and prints counts, rates and examples per category.
A malformed row stops the run with its line number unless ``--skip-malformed``.
"""
from __future__ import annotations

import argparse
import json
import logging

from bench.cli.argtypes import positive_int, unit_interval

__all__ = ["add_parser"]

log = logging.getLogger(__name__)


def _cmd(args: argparse.Namespace) -> int:
    from registry import load_faithfulness
    from generate.audit import audit_answers, read_answer_log
    from generate.gate import FaithfulnessGate

    if args.out:  # before the audit, not after it
        from bench.report import check_output_path

        check_output_path(args.out)
    errors: list[str] = []
    rows = list(read_answer_log(args.log, skip_malformed=args.skip_malformed, errors=errors))
    if not rows:
        raise ValueError(f"{args.log}: no valid rows to audit" + (f" ({len(errors)} skipped as malformed)" if errors else ""))
    gate = FaithfulnessGate(load_faithfulness(args.faithfulness), threshold=args.threshold)
    report = audit_answers(rows, gate, n_examples=args.examples, skipped=errors)
    print(f"{report.n} answers ({report.with_references} with reference answers), {len(errors)} malformed rows skipped")
    for cat, c in sorted(report.counts.items(), key=lambda kv: -kv[1]):
        print(f"  {cat:22s} {c:6d}  {report.rates[cat]:.3f}")
    for cat, ex in report.examples.items():
        for e in ex[:1]:
            print(f"  e.g. {cat} (line {e['line']}): {e['query'][:70]!r} -> {e['answer'][:70]!r}")
    if args.out:
        from bench.report import atomic_write_text

        atomic_write_text(args.out, json.dumps(report.to_dict(), indent=2) + "\n")
        log.info(f"wrote {args.out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("answers", help="separate retrieval misses from unfaithful answers in a logged JSONL")
    p.add_argument("--log", required=True, help="JSONL of {query, passages, answer[, reference_answers]}")
    p.add_argument("--faithfulness", default="faithfulness", help="registry name or folder of the faithfulness specialist")
    p.add_argument("--threshold", type=unit_interval, default=None, help="P(supported) cutoff (default: the model's own)")
    p.add_argument("--skip-malformed", action="store_true", help="skip malformed rows (reported) instead of stopping")
    p.add_argument("--examples", type=positive_int, default=3, help="examples kept per category")
    p.add_argument("--out", default=None, help="JSON report")
    p.set_defaults(func=_cmd)
