"""distill: judge-side tools.

* :mod:`distill.ledger` -- Single-LLM Overspend (V): attribution ledger of every LLM / specialist call, priced.
* :mod:`distill.judge` -- the LLM-judge baseline (relevance, faithfulness, intent) with versioned prompts.
"""
from distill.judge import JUDGE_TASKS, LLMJudge, Verdict, load_judge_prompts
from distill.ledger import KINDS, PRICINGS, CallRecord, Ledger, LedgerFormatError, PriceMissingError, Prices

__all__ = ["Ledger", "Prices", "CallRecord", "LedgerFormatError", "PriceMissingError", "KINDS", "PRICINGS",
           "LLMJudge", "Verdict", "load_judge_prompts", "JUDGE_TASKS"]
