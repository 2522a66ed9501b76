"""``ragfix bench faithfulness``: the faithfulness gate on HaluEval and on the pipeline's own NQ answers (II).

Right Doc, Wrong Answer. Two measurements, baseline and fix side by side:

1. **HaluEval QA, held-out and length-matched** (:func:`cascade.faithfulness.length_matched_eval`):
   the gate's verdict (pass = supported) against right/hallucinated, as balanced accuracy; the
   length-only baseline beside it (0.5 by construction of the split).
2. **The pipeline's own answers** on NQ-open oracle questions: the gold passage and two hard
   distractors (:func:`generate.context_rot.build_items`) in rank order, SmolLM2 answers, the gate
   checks each answer. Verdicts are compared with correctness (an answer string in the answer):
   how often a passed answer is correct vs a flagged one. Then each fallback policy
   (``none``, ``regenerate``, ``extractive``, ``abstain``) is applied to the flagged answers and the
   accuracy over all questions (abstentions count as not correct) and the abstention rate reported.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from bench.cli.argtypes import non_negative_int, positive_int

__all__ = ["add_parser", "run_faithfulness_bench"]


def _halueval(scorer, gate, seed: int) -> dict:
    import cascade.faithfulness as F
    import data.faithfulness as FD

    rows = FD.load_halueval("qa")
    heldout = (getattr(scorer, "meta", None) or {}).get("recipe", {}).get("heldout", 3000)
    train_idx, held = F.halueval_qa_split(len(rows), heldout)
    items = F.length_matched_eval(rows, held, seed=seed)
    y = np.array([c.label for c in items])
    t0 = time.process_time()
    passed = np.array([gate.check(c.question, c.claim, [c.evidence]).passed for c in items])
    cpu = time.process_time() - t0
    fit = F.unmatched_eval(rows, train_idx)
    base = F.LengthBaseline().fit([c.n_words for c in fit], [c.label for c in fit]).predict_proba([c.n_words for c in items])
    return {"n": len(items), "gate": {"balanced_accuracy": F.balanced_accuracy(y, passed), "cpu_ms_per_answer": 1000 * cpu / len(items)},
            "length_baseline": {"balanced_accuracy": F.balanced_accuracy(y, base >= 0.5)}}


def _nq(llm, gate, limit: int, seed: int, max_new_tokens: int) -> dict:
    from registry import load_embedder
    from generate.audit import has_answer
    from data.nq_open import load_nq_oracle
    from generate.context_rot import build_items
    from generate.gate import POLICIES, apply_policy
    from generate.prompt import build_messages
    from retrieval.types import Document

    items = build_items(load_nq_oracle(), load_embedder("minilm"), n_passages=3, limit=limit, seed=seed + 1000)
    rows = []
    from bench.report.progress import progress

    for k, it in enumerate(progress(items, "nq answers", unit="question")):
        pool = [it.gold] + list(it.distractors)
        passages = [pool[j] for j in it.ranked]

        def ask(ps, q=it.question):
            docs = [Document(str(i), p) for i, p in enumerate(ps)]
            return llm.generate(build_messages(q, docs, max_words_per_passage=100), max_new_tokens=max_new_tokens).text

        answer = ask(passages)
        res = gate.check(it.question, answer, passages)
        row = {"correct": has_answer(answer, it.answers), "verdict": res.verdict, "passed": res.passed}
        for policy in POLICIES:
            text, after = apply_policy(policy, gate, it.question, passages, res, regenerate=ask)
            row[policy] = {"correct": has_answer(text, it.answers), "abstained": after.abstained}
        rows.append(row)
    correct = np.array([r["correct"] for r in rows])
    passed = np.array([r["passed"] for r in rows])
    out = {"n": len(rows), "answer_accuracy": float(correct.mean()), "flag_rate": float(1 - passed.mean()),
           "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in ("supported", "unsupported", "contradicted", "abstained")},
           "accuracy_when_passed": float(correct[passed].mean()) if passed.any() else None,
           "accuracy_when_flagged": float(correct[~passed].mean()) if (~passed).any() else None,
           "policies": {}}
    for policy in POLICIES:
        out["policies"][policy] = {"accuracy": float(np.mean([r[policy]["correct"] for r in rows])),
                                   "abstention_rate": float(np.mean([r[policy]["abstained"] for r in rows]))}
    return out


def run_faithfulness_bench(args: argparse.Namespace) -> dict:
    from registry import load_faithfulness, load_llm
    from generate.gate import FaithfulnessGate

    scorer = load_faithfulness(args.faithfulness)
    gate = FaithfulnessGate(scorer)
    metrics = _halueval(scorer, gate, args.seed)
    result = {"metrics": {"gate": metrics["gate"], "length_baseline": metrics["length_baseline"]}, "halueval_n": metrics["n"],
              "scorer_name": args.faithfulness}
    if args.nq_limit:
        result["nq_pipeline"] = _nq(load_llm(args.llm), gate, args.nq_limit, args.seed, args.max_new_tokens)
    if hasattr(args, "hard_cases"):  # issue 22: leave-one-task-out, hard cases, cascade, pipeline, cost
        from bench.benchmarks.faithfulness_ce import extend_result

        extend_result(args, scorer, gate, result)
    return result


def markdown(r: dict, command: str) -> str:
    m = r["metrics"]
    lines = ["| check | balanced accuracy (HaluEval QA, held-out, length-matched) |", "|---|---|",
             f"| length-only baseline | {m['length_baseline']['balanced_accuracy']:.3f} |",
             f"| faithfulness gate ({r.get('scorer_name', 'specialist')}) | {m['gate']['balanced_accuracy']:.3f} |", "",
             f"{r['halueval_n']} answers; gate CPU {m['gate']['cpu_ms_per_answer']:.2f} ms per answer."]
    nq = r.get("nq_pipeline")
    if nq:
        lines += ["", f"Pipeline's own answers (SmolLM2, {nq['n']} NQ-open questions, gold + 2 hard distractors): answer accuracy "
                      f"{nq['answer_accuracy']:.3f}; gate flags {nq['flag_rate']:.0%} "
                      f"(verdicts {nq['verdicts']}); accuracy when passed "
                      f"{nq['accuracy_when_passed'] if nq['accuracy_when_passed'] is None else round(nq['accuracy_when_passed'], 3)}, "
                      f"when flagged {nq['accuracy_when_flagged'] if nq['accuracy_when_flagged'] is None else round(nq['accuracy_when_flagged'], 3)}.",
                  "", "| policy on flagged answers | accuracy (all questions) | abstention rate |", "|---|---|---|"]
        for p, v in nq["policies"].items():
            lines.append(f"| {p} | {v['accuracy']:.3f} | {v['abstention_rate']:.3f} |")
    from bench.benchmarks.faithfulness_ce import markdown_lines

    lines += markdown_lines(r)
    lines += ["", f"Command: `{command}`."]
    return "\n".join(lines) + "\n"


def _cmd(args: argparse.Namespace) -> int:
    from bench.report import write_results

    r = run_faithfulness_bench(args)
    md = markdown(r, "ragfix " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    keys = ("faithfulness", "llm", "nq_limit", "seed", "max_new_tokens", "loto_dir", "loto_items", "hard_cases", "cascade",
            "nq_answers", "pipeline_limit", "cost_items", "price_as")
    write_results(args.out, {k: getattr(args, k) for k in keys if hasattr(args, k)},
                  r["metrics"], markdown=md, **{k: v for k, v in r.items() if k != "metrics"})
    print(md)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faithfulness", help="faithfulness gate: HaluEval length-matched, and the pipeline's NQ answers (II)")
    p.add_argument("--faithfulness", default="faithfulness", help="registry name or folder of the specialist")
    p.add_argument("--llm", default="smollm2")
    p.add_argument("--nq-limit", type=non_negative_int, default=40, help="NQ-open questions answered by the pipeline (0 to skip)")
    p.add_argument("--max-new-tokens", type=positive_int, default=24)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", default=str(Path("results") / "faithfulness.json"))
    from bench.benchmarks.faithfulness_ce import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd)
