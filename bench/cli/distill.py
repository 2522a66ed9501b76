"""``ragfix distill judge``: argument parsing for :func:`bench.recipes.distill.distill_judge` (its docstring
says what the command trains, measures and writes)."""
from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    d = subparsers.add_parser("distill", help="IX: distil a judge into a cheap student, watched in production")
    sub = d.add_subparsers(dest="distill", required=True)
    p = sub.add_parser("judge", help="train a student on a teacher's (cached) verdicts; held-out agreement, cost per 1k")
    p.add_argument("--teacher", default="reranker-l6", help="registered cross-encoder name")
    p.add_argument("--student", default="logreg-ce:reranker-l2",
                   help="logreg-ce:<cross-encoder> (logistic regression on a cheap cross-encoder's logit + overlap + length) "
                        "or logreg:<embedder> (on embedding features)")
    p.add_argument("--data", default="scifact", help="comma-separated pools: scifact, nq, hotpotqa")
    p.add_argument("--queries", type=int, default=150, help="queries per pool")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--threshold", type=float, default=0.5, help="teacher verdict: score above this")
    p.add_argument("--heldout", type=float, default=0.4, help="share of queries held out")
    p.add_argument("--max-chars", type=int, default=1000)
    p.add_argument("--cache", default="runs/judge-cache.sqlite", help="the JudgeCache file (shared with the benches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for the student and report.json")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from bench.recipes.distill import distill_judge, parse_student, pool_names

    parse_student(args.student)
    pool_names(args.data)
    if args.queries < 2 or args.top_k < 1:
        raise ValueError(f"need --queries >= 2 and --top-k >= 1, got {args.queries}, {args.top_k}")
    r = distill_judge(args.teacher, args.student, args.data, args.out, args.queries, args.top_k, args.threshold,
                      args.heldout, args.max_chars, args.cache, args.seed)
    a, c = r["agreement"], r["cost_per_1k_usd"]
    print(f"held-out agreement {a['value']:.4f} [{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}] on {r['heldout_pairs']} pairs; "
          f"cost per 1k: teacher ${c['teacher']:.5f}, student ${c['student']:.5f}; teacher calls paid now "
          f"{r['cache']['teacher_calls_paid_now']} (cache hits {r['cache']['hits']}); wrote {args.out}")
    return 0
