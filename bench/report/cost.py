"""``ragfix report cost --ledger FILE``: spend by task, and what routing each task to its specialist would save (V).

Reads an attribution ledger (:mod:`distill.ledger`); a file that is not a ledger is refused with
:class:`distill.ledger.LedgerFormatError`. Costs were priced when each call was recorded.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "cost_report"]


def _usd(v) -> str:
    return "—" if v is None else f"${v:,.6f}"


def cost_report(ledger_path: str) -> str:
    from bench.report import markdown_table
    from distill.ledger import Ledger

    with Ledger.open(ledger_path) as led:
        spend, save = led.by_task(), led.savings()
    if not spend:
        return f"{ledger_path}: ledger has no calls yet\n"
    t1 = markdown_table([{**r, "usd": _usd(r["usd"]), "usd_per_1k": _usd(r["usd_per_1k"]), "priced as": r["priced_as"]}
                         for r in spend], ["task", "kind", "model", "priced as", "calls", "tokens_in", "tokens_out", "cpu_s", "usd", "usd_per_1k"])
    t2 = markdown_table([{**r, "llm_usd": _usd(r["llm_usd"]), "specialist_usd_per_call": _usd(r["specialist_usd_per_call"]),
                          "routed_usd": _usd(r["routed_usd"]), "saving_usd": _usd(r["saving_usd"]),
                          "cost_ratio": "—" if r["cost_ratio"] is None else f"{r['cost_ratio']:,.0f}x"} for r in save],
                        ["task", "llm_calls", "llm_usd", "specialist_calls", "specialist_usd_per_call", "routed_usd", "saving_usd", "cost_ratio"])
    return (f"## Spend by task ({ledger_path})\n\n{t1}\n## Routing each task's LLM calls to its specialist\n\n{t2}\n"
            "routed_usd = the task's LLM call count x the mean measured cost of its specialist calls; — = no specialist "
            "call measured for that task.\n")


def _cmd(args: argparse.Namespace) -> int:
    from distill.ledger import LedgerFormatError

    try:
        print(cost_report(args.ledger))
    except LedgerFormatError as exc:
        print(f"ragfix: error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="spend by task from an attribution ledger, and the saving of routing to specialists")
    p.add_argument("--ledger", required=True, help="SQLite ledger written by distill.ledger.Ledger (e.g. by bench specialists)")
    p.set_defaults(func=_cmd)
