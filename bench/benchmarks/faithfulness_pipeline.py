"""The gate on the pipeline's own answers (issue 22): NQ-open questions, SmolLM2 answers, correctness as reference.

Two steps, so the slow one runs once:

1. :func:`generate_answers` -- for ``limit`` NQ-open oracle questions (gold passage + two hard
   distractors, :func:`generate.context_rot.build_items`, in rank order) SmolLM2 answers with its
   citations prompt; each row (question, passages, gold answers, answer, correct) is appended to a
   JSONL cache, and a rerun continues where the cache ends.
2. :func:`gate_answers` -- the gate checks every cached answer; passed vs flagged answers are
   compared on correctness (an answer string in the answer, :func:`generate.audit.has_answer`):
   ``passed_correct_rate``, ``flagged_correct_rate`` and a 95% bootstrap interval of their
   difference (``diff_ci95``, resampling questions). The ``extractive`` and ``abstain`` fallback
   policies are applied to flagged answers, with accuracy (abstentions count as not correct),
   wrong-answer rate and abstention rate per policy. ``regenerate`` needs the LLM again per flagged
   answer and is left out here (``ragfix bench faithfulness --nq-limit`` runs it).

Failure modes: a cache line that is not a JSON object of the expected keys raises ValueError naming the line.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["generate_answers", "gate_answers", "load_answers"]

_KEYS = ("question", "passages", "answers", "answer", "correct")


def load_answers(path: Path | str) -> list[dict]:
    """Rows of an answers cache (see the module doc); raises ValueError naming a bad line."""
    rows = []
    p = Path(path)
    if not p.is_file():
        return rows
    from data import read_jsonl

    for n, obj in read_jsonl(p):
        if not all(k in obj for k in _KEYS):
            raise ValueError(f"{p}:{n}: expected an object with keys {', '.join(_KEYS)}")
        rows.append(obj)
    return rows


def generate_answers(path: Path | str, limit: int = 200, seed: int = 0, llm: str = "smollm2",
                     max_new_tokens: int = 24) -> list[dict]:
    """Answer ``limit`` NQ-open oracle questions with ``llm`` and append them to the cache at ``path``."""
    from data.nq_open import load_nq_oracle
    from generate.audit import has_answer
    from generate.context_rot import build_items
    from generate.prompt import build_messages
    from registry import load_embedder, load_llm
    from retrieval.types import Document

    path = Path(path)
    done = load_answers(path)
    items = build_items(load_nq_oracle(), load_embedder("minilm"), n_passages=3, limit=limit, seed=seed + 1000)
    if len(done) >= len(items):
        return done[: len(items)]
    model = load_llm(llm)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for k, it in enumerate(items[len(done):], len(done)):
            pool = [it.gold] + list(it.distractors)
            passages = [pool[j] for j in it.ranked]
            docs = [Document(str(i), p) for i, p in enumerate(passages)]
            answer = model.generate(build_messages(it.question, docs, max_words_per_passage=100),
                                    max_new_tokens=max_new_tokens).text
            row = {"question": it.question, "passages": passages, "answers": list(it.answers), "answer": answer,
                   "correct": bool(has_answer(answer, it.answers)), "gold_rank": list(it.ranked).index(0)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            done.append(row)
            if (k + 1) % 10 == 0:
                log.info("nq answers %d/%d", k + 1, len(items))
    return done


def _bootstrap_diff(correct: np.ndarray, passed: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float] | None:
    rng = np.random.default_rng(seed)
    diffs = []
    n = len(correct)
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        c, p = correct[i], passed[i]
        if p.any() and (~p).any():
            diffs.append(c[p].mean() - c[~p].mean())
    if len(diffs) < n_boot // 2:
        return None
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


def gate_answers(rows: list[dict], gate) -> dict:
    """Gate verdicts against correctness on cached answers, and the extractive/abstain policies (see the module doc)."""
    from generate.audit import has_answer
    from generate.gate import apply_policy

    if not rows:
        raise ValueError("gate_answers: no answers; run generate_answers first")
    out_rows = []
    for r in rows:
        res = gate.check(r["question"], r["answer"], r["passages"])
        row = {"correct": bool(r["correct"]), "passed": res.passed, "verdict": res.verdict}
        for policy in ("none", "extractive", "abstain"):
            text, after = apply_policy(policy, gate, r["question"], r["passages"], res)
            row[policy] = {"correct": bool(has_answer(text, r["answers"])), "abstained": after.abstained}
        out_rows.append(row)
    correct = np.array([r["correct"] for r in out_rows])
    passed = np.array([r["passed"] for r in out_rows])
    pol = {}
    for policy in ("none", "extractive", "abstain"):
        c = np.array([r[policy]["correct"] for r in out_rows])
        a = np.array([r[policy]["abstained"] for r in out_rows])
        pol[policy] = {"accuracy": float(c.mean()), "abstention_rate": float(a.mean()),
                       "wrong_rate": float((~c & ~a).mean())}
    return {"n": len(out_rows), "answer_accuracy": float(correct.mean()), "flag_rate": float(1 - passed.mean()),
            "n_passed": int(passed.sum()),
            "verdicts": {v: sum(r["verdict"] == v for r in out_rows) for v in ("supported", "unsupported", "contradicted", "abstained")},
            "passed_correct_rate": float(correct[passed].mean()) if passed.any() else None,
            "flagged_correct_rate": float(correct[~passed].mean()) if (~passed).any() else None,
            "diff_ci95": _bootstrap_diff(correct, passed), "policies": pol}
