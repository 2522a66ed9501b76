"""distill: judge-side tools.

* :mod:`distill.ledger` -- Single-LLM Overspend (V): attribution ledger of every LLM / specialist call, priced.
* :mod:`distill.judge` -- the LLM-judge baseline (relevance, faithfulness, intent) with versioned prompts.
* :mod:`distill.judge_cache` -- Eval-Spend Overrun (IV): content-addressed, crash-safe verdict cache for any judge.
* :mod:`distill.student` / :mod:`distill.agreement_monitor` -- Distillation Drift (IX): a student judge trained on
  the teacher's cached verdicts, and the shadow-sample monitor that escalates and accepts retrained students.

Lift-out needs: monitor (copy ``distill/`` and ``monitor/``: the SQLite stores open through
``monitor.sqlite_store``, the drift monitor uses its CUSUM and bounds; prices and prompts are passed in as objects,
``registry.load_prices()`` / ``registry.load_judge_prompts()`` read the project's). The example
below runs from such a copy in ``tests/unit/test_liftout.py``.

Example::

    from distill import Ledger, Prices

    prices = Prices({"compute": {"cpu_core_hour_usd": 0.04},
                     "llms": {"gpt-4o-mini": {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 0.6}}})
    with Ledger("ledger.sqlite", prices) as led:
        led.record("intent", "gpt-4o-mini", kind="llm", tokens_in=812, tokens_out=4, wall_s=0.9)
        print(led.by_task())  # one row: task intent, 1 call, usd 0.0001242
"""
from distill.judge import JUDGE_TASKS, LLMJudge, Verdict, load_judge_prompts
from distill.judge_cache import JudgeCache, JudgeSpec, LLMJudgeScorer, PairScorerJudge, RefreshReport, Scored, cache_savings
from distill.ledger import KINDS, PRICINGS, CallRecord, Ledger, LedgerFormatError, PriceMissingError, Prices

__all__ = ["Ledger", "Prices", "CallRecord", "LedgerFormatError", "PriceMissingError", "KINDS", "PRICINGS",
           "LLMJudge", "Verdict", "load_judge_prompts", "JUDGE_TASKS",
           "JudgeCache", "JudgeSpec", "LLMJudgeScorer", "PairScorerJudge", "RefreshReport", "Scored", "cache_savings"]
