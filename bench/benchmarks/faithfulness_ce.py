"""Measurements of the cross-encoder faithfulness model for ``ragfix bench faithfulness`` (issue 22).

- **Leave one task out** (:func:`loto_metrics`): a model trained on two HaluEval tasks scores the
  held-out, length-matched items (:func:`data.faithfulness_ce.heldout_eval`) of the third, at the
  model's own threshold, calibrated at training time on unused train rows of the two tasks it trained
  on (no data of the third task is used, not even to set a threshold).
- **Hard cases** (:func:`hard_case_metrics`): the committed, hand-written file
  ``tests/data/faithfulness_hard_cases.jsonl`` -- paraphrases of a supported answer, answers found
  only in a distractor passage, swapped names and numbers -- run through the gate (all passages of
  the case given; the answer cites none, so each claim is checked against every passage).
- **Are the labels about grounding?** (:func:`label_grounding`, :func:`in_domain_metrics`): on the same
  held-out items, how often a right and a hallucinated claim have every name and number found in their
  evidence (:func:`data.faithfulness_ce.fact_grounding`), the balanced accuracy of passing exactly those,
  and the shipped model -- which trained on the train rows of every task -- scored in domain. A task
  whose right answers are mostly not grounded in their evidence cannot be passed by a model of
  P(evidence supports claim), however it is trained.
- **Cost per 1,000 checks** (:func:`cost_per_1k`): the specialist's CPU seconds, measured per batch
  through :class:`distill.ledger.Ledger` and priced by ``configs/prices.yaml``; the LLM judge priced
  by tokens (the judge prompt of ``configs/judge_prompts.yaml`` filled with the same items, counted
  with MiniLM's WordPiece tokenizer, 1 output token) as ``price_as`` (gpt-4o-mini by default).

Failure modes: a hard-case line that is not a JSON object with the keys of :data:`CASE_KEYS`, an
unknown ``kind`` or ``label``, or no passages raises ValueError naming the file and line.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["load_hard_cases", "hard_case_metrics", "loto_metrics", "in_domain_metrics", "label_grounding", "cost_per_1k",
           "CASE_KEYS", "CASE_KINDS", "HARD_CASES"]

HARD_CASES = Path(__file__).resolve().parents[2] / "tests" / "data" / "faithfulness_hard_cases.jsonl"
CASE_KEYS = ("id", "kind", "question", "passages", "answer", "label")
CASE_KINDS = ("paraphrase", "supported_short", "distractor", "swap_entity", "swap_number")
_LABELS = ("supported", "unsupported")


def load_hard_cases(path: Path | str = HARD_CASES) -> list[dict]:
    """The hard cases of ``path`` (JSONL), each checked; raises ValueError naming ``file:line`` on a bad one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no hard-case file; it is committed at tests/data/faithfulness_hard_cases.jsonl")
    out, ids = [], set()
    from data import read_jsonl

    for n, c in read_jsonl(p):
        if any(k not in c for k in CASE_KEYS):
            raise ValueError(f"{p}:{n}: a case needs the keys {', '.join(CASE_KEYS)}")
        if c["kind"] not in CASE_KINDS:
            raise ValueError(f"{p}:{n}: kind {c['kind']!r} is not one of {', '.join(CASE_KINDS)}")
        if c["label"] not in _LABELS:
            raise ValueError(f"{p}:{n}: label {c['label']!r} is not one of {', '.join(_LABELS)}")
        if not isinstance(c["passages"], list) or not c["passages"] or not all(isinstance(x, str) and x.strip() for x in c["passages"]):
            raise ValueError(f"{p}:{n}: passages must be a non-empty list of non-empty strings")
        for k in ("question", "answer"):
            if not isinstance(c[k], str) or not c[k].strip():
                raise ValueError(f"{p}:{n}: {k} must be a non-empty string")
        if c["id"] in ids:
            raise ValueError(f"{p}:{n}: duplicate id {c['id']!r}")
        ids.add(c["id"])
        out.append(c)
    return out


def hard_case_metrics(gate, cases: Sequence[dict]) -> dict[str, Any]:
    """Accuracy of the gate's pass/flag on ``cases`` (pass = supported), overall and per kind, with the misses."""
    right, by_kind, misses = [], {}, []
    for c in cases:
        res = gate.check(c["question"], c["answer"], c["passages"])
        ok = res.passed == (c["label"] == "supported")
        right.append(ok)
        by_kind.setdefault(c["kind"], []).append(ok)
        if not ok:
            misses.append(c["id"])
    return {"n": len(cases), "accuracy": float(np.mean(right)),
            "by_kind": {k: {"n": len(v), "accuracy": float(np.mean(v))} for k, v in sorted(by_kind.items())},
            "misses": misses}


def loto_metrics(models: dict[str, str | Path], n_items: int = 400, seed: int = 0, max_length: int = 256,
                 items: dict[str, list] | None = None) -> dict:
    """``{task: {balanced_accuracy, auc, n, model}}`` for each held-out task with a model trained without it.

    ``items``: the held-out items per task when the caller has built them (:func:`data.faithfulness_ce.heldout_eval`).
    """
    from sklearn.metrics import roc_auc_score

    from cascade.faithfulness import FaithfulnessScorer, balanced_accuracy
    from data.faithfulness_ce import heldout_eval

    out: dict[str, Any] = {}
    for task, folder in models.items():
        scorer = FaithfulnessScorer(str(folder), max_length=max_length)
        trained_on = scorer.meta.get("recipe", {}).get("tasks")
        if trained_on and task in trained_on:
            raise ValueError(f"leave-one-task-out: the model {folder} was trained on {task}; pass one trained without it")
        its = items[task] if items and task in items else heldout_eval(task, n_items, seed)
        y = np.array([c.label for c in its])
        p = scorer.predict_proba([c.evidence for c in its], [c.claim for c in its], [c.question for c in its])
        out[task] = {"balanced_accuracy": balanced_accuracy(y, p >= scorer.threshold), "auc": float(roc_auc_score(y, p)),
                     "threshold": scorer.threshold, "n": len(its), "model": str(folder), "trained_on": trained_on,
                     "steps": scorer.meta.get("progress", {}).get("steps_done")}
    return out


def _threshold_free(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, and the balanced accuracy at the best cutoff ``p >= t``: max over the ROC curve of (TPR + TNR) / 2."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    return {"auc": float(roc_auc_score(y, p)), "best_balanced_accuracy": float(np.max((tpr + 1 - fpr) / 2))}


def in_domain_metrics(scorer, tasks: Sequence[str] = ("qa", "dialogue", "summarization"), n_items: int = 400,
                      seed: int = 0, items: dict[str, list] | None = None) -> dict[str, Any]:
    """``{task: {balanced_accuracy, auc, best_balanced_accuracy, n, trained_on_task}}``: ``scorer`` on the held-out items of each task.

    The leave-one-task-out items (:func:`data.faithfulness_ce.heldout_eval`), scored by a model that may
    have trained on the task's *train* rows: the in-domain reference each fold is read against.
    ``best_balanced_accuracy`` takes the best cutoff chosen on these items themselves, an upper bound
    for any threshold, not a measurement of one.
    """
    from cascade.faithfulness import balanced_accuracy
    from data.faithfulness_ce import heldout_eval

    trained = (getattr(scorer, "meta", None) or {}).get("recipe", {}).get("tasks") or []
    out: dict[str, Any] = {}
    for task in tasks:
        its = items[task] if items and task in items else heldout_eval(task, n_items, seed)
        y = np.array([c.label for c in its])
        p = scorer.predict_proba([c.evidence for c in its], [c.claim for c in its], [c.question for c in its])
        out[task] = {"balanced_accuracy": balanced_accuracy(y, p >= scorer.threshold), **_threshold_free(y, p),
                     "n": len(its), "trained_on_task": task in trained}
    return out


def label_grounding(tasks: Sequence[str] = ("qa", "dialogue", "summarization"), n_items: int = 400,
                    seed: int = 0) -> dict[str, Any]:
    """Per task, on the leave-one-task-out items: are the right claims grounded in their evidence and the hallucinated ones not?

    ``grounded_right`` / ``grounded_hallucinated``: share of claims with every name and number found in
    the whole evidence, not the model's 150-word cut (:func:`data.faithfulness_ce.fact_grounding`; a claim
    without any counts as grounded); ``rule_balanced_accuracy``: pass exactly the grounded claims; ``found_share_auc``: the AUC of the
    share of the claim's facts found (1.0 without facts). A proxy read by string match, the same
    for both labels: it shows whether "right" in a data set means "stated by the evidence".
    """
    from cascade.faithfulness import balanced_accuracy
    from data.faithfulness_ce import fact_grounding, heldout_eval

    out: dict[str, Any] = {}
    for task in tasks:
        items = heldout_eval(task, n_items, seed, max_evidence_words=10**9)  # the whole evidence, not the model's cut
        y = np.array([c.label for c in items])
        fg = [fact_grounding(c.evidence, c.claim) for c in items]
        share = np.array([f / n if n else 1.0 for f, n in fg])
        grounded = share >= 1.0
        with_facts = np.array([n > 0 for _, n in fg])
        out[task] = {"n": len(items), "grounded_right": float(grounded[y == 1].mean()),
                     "grounded_hallucinated": float(grounded[y == 0].mean()),
                     "with_facts_right": float(with_facts[y == 1].mean()),
                     "with_facts_hallucinated": float(with_facts[y == 0].mean()),
                     "rule_balanced_accuracy": balanced_accuracy(y, grounded),
                     "found_share_auc": _threshold_free(y, share)["auc"]}
    return out


def cost_per_1k(scorer, items, ledger_path: Path | str, model_name: str, price_as: str = "gpt-4o-mini",
                batch: int = 32) -> dict[str, Any]:
    """Cost per 1,000 checks of ``scorer`` (measured CPU, priced) and of an LLM judge (priced by tokens), via the ledger."""
    from distill.ledger import Ledger
    from registry import load_judge_prompts, load_prices

    prices = load_prices()
    prompt = load_judge_prompts()["tasks"]["faithfulness"]
    from transformers import AutoTokenizer

    from rerank.train import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())  # MiniLM's WordPiece: the same count for every scorer
    Path(ledger_path).unlink(missing_ok=True)
    with Ledger(ledger_path, prices) as ledger:
        for s in range(0, len(items), batch):
            part = items[s: s + batch]
            w0, c0 = time.perf_counter(), time.process_time()
            scorer.predict_proba([c.evidence for c in part], [c.claim for c in part], [c.question for c in part])
            w, c = time.perf_counter() - w0, time.process_time() - c0
            for _ in part:
                ledger.record("faithfulness", model_name, kind="specialist", wall_s=w / len(part), cpu_s=c / len(part))
        for c in items:
            text = prompt["system"] + "\n" + prompt["user"].format(evidence=c.evidence, claim=c.full_claim())
            n_in = len(tok(text, add_special_tokens=False)["input_ids"])
            ledger.record("faithfulness", price_as, kind="llm", tokens_in=n_in, tokens_out=1, pricing="tokens",
                          priced_as=price_as)
        rows = ledger.rows()
    sp = [r for r in rows if r["kind"] == "specialist"]
    llm = [r for r in rows if r["kind"] == "llm"]
    out = {"specialist": 1000 * sum(r["cost_usd"] for r in sp) / len(sp),
           "specialist_cpu_ms_per_check": 1000 * sum(r["cpu_s"] for r in sp) / len(sp),
           "llm": 1000 * sum(r["cost_usd"] for r in llm) / len(llm), "llm_priced_as": price_as,
           "llm_tokens_in_per_check": sum(r["tokens_in"] for r in llm) / len(llm), "n_checks": len(sp),
           "ledger": str(ledger_path)}
    out["llm_over_specialist"] = out["llm"] / out["specialist"] if out["specialist"] > 0 else None
    return out


def _qa_items(scorer, seed: int):
    import cascade.faithfulness as F
    import data.faithfulness as FD

    rows = FD.load_halueval("qa")
    heldout = (getattr(scorer, "meta", None) or {}).get("recipe", {}).get("heldout", 3000)
    _, held = F.halueval_qa_split(len(rows), heldout)
    return F.length_matched_eval(rows, held, seed=seed)


def extend_result(args, scorer, gate, result: dict) -> dict:
    """Add the issue-22 keys to ``ragfix bench faithfulness``'s result (in place; returned too).

    ``metrics.leave_one_task_out`` (when ``args.loto_dir`` holds ``<task>/`` models), ``metrics.hard_cases``,
    ``metrics.cascade`` (lexical first stage + this scorer, when ``args.cascade`` is set),
    ``metrics.pipeline`` (when ``args.nq_answers`` names an answers cache) and ``cost_per_1k``.
    """
    from bench.benchmarks.faithfulness_pipeline import gate_answers, generate_answers

    m = result["metrics"]
    loto_dir = Path(args.loto_dir) if getattr(args, "loto_dir", None) else None
    if loto_dir is not None:
        # each <task>/ is a model folder, or a training work folder with the model in <task>/final
        models = {t: (loto_dir / t / "final" if (loto_dir / t / "final").is_dir() else loto_dir / t)
                  for t in ("qa", "dialogue", "summarization") if (loto_dir / t).is_dir()}
        if not models:
            raise FileNotFoundError(f"--loto-dir {loto_dir}: no qa/, dialogue/ or summarization/ model folder in it")
        from data.faithfulness_ce import heldout_eval

        held = {t: heldout_eval(t, args.loto_items, args.seed) for t in ("qa", "dialogue", "summarization")}  # built once
        m["leave_one_task_out"] = loto_metrics(models, n_items=args.loto_items, seed=args.seed, items=held)
        m["in_domain"] = in_domain_metrics(scorer, n_items=args.loto_items, seed=args.seed, items=held)
        m["label_grounding"] = label_grounding(n_items=args.loto_items, seed=args.seed)
    cases = load_hard_cases(args.hard_cases)
    m["hard_cases"] = hard_case_metrics(gate, cases)
    if getattr(args, "cascade", None):
        from generate.gate import FaithfulnessGate
        from registry import load_faithfulness

        from cascade.faithfulness import FaithfulnessCascade, balanced_accuracy

        low, high = args.cascade
        casc = FaithfulnessCascade(load_faithfulness("faithfulness"), scorer, low, high)
        cgate = FaithfulnessGate(casc, threshold=gate.threshold)
        items = _qa_items(scorer, args.seed)
        y = np.array([c.label for c in items])
        passed = np.array([cgate.check(c.question, c.claim, [c.evidence]).passed for c in items])
        m["cascade"] = {"low": low, "high": high, "gate_balanced_accuracy": balanced_accuracy(y, passed),
                        "hard_cases": hard_case_metrics(cgate, cases),
                        "share_decided_by_lexical": casc.n_fast_ / max(1, casc.n_fast_ + casc.n_slow_)}
    if getattr(args, "nq_answers", None):
        rows = generate_answers(args.nq_answers, limit=args.pipeline_limit, seed=args.seed, llm=args.llm,
                                max_new_tokens=args.max_new_tokens)
        m["pipeline"] = gate_answers(rows, gate)
    items = _qa_items(scorer, args.seed)[: args.cost_items]
    result["cost_per_1k"] = cost_per_1k(scorer, items, Path(args.out).with_suffix(".ledger.sqlite"),
                                        str(getattr(args, "faithfulness", "faithfulness")), price_as=args.price_as)
    return result


def add_arguments(p) -> None:
    """The options :func:`extend_result` reads, added to the ``bench faithfulness`` parser."""
    from bench.cli.argtypes import positive_int

    def band(text: str) -> tuple[float, float]:
        import argparse

        try:
            low, high = (float(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--cascade takes LOW,HIGH (two numbers), got {text!r}") from None
        if not 0.0 <= low < high <= 1.0:
            raise argparse.ArgumentTypeError(f"--cascade needs 0 <= LOW < HIGH <= 1, got {text!r}")
        return low, high

    p.add_argument("--loto-dir", default=None, help="folder with qa/, dialogue/, summarization/: each a model trained without that task")
    p.add_argument("--loto-items", type=positive_int, default=400, help="held-out, length-matched items per task")
    p.add_argument("--hard-cases", default=str(HARD_CASES), help="hand-written hard cases (JSONL)")
    p.add_argument("--cascade", type=band, default=None, metavar="LOW,HIGH",
                   help="also measure the lexical model as a first stage deciding P<=LOW and P>=HIGH")
    p.add_argument("--nq-answers", default=None, help="answers cache (JSONL) for metrics.pipeline; missing answers are generated")
    p.add_argument("--pipeline-limit", type=positive_int, default=200, help="NQ-open questions for metrics.pipeline")
    p.add_argument("--cost-items", type=positive_int, default=256, help="checks timed for cost_per_1k")
    p.add_argument("--price-as", default="gpt-4o-mini", help="priced LLM judge for cost_per_1k (configs/prices.yaml)")


def markdown_lines(r: dict) -> list[str]:
    """The issue-22 part of the results block (empty when the keys are absent)."""
    m, lines = r["metrics"], []
    loto = m.get("leave_one_task_out")
    if loto:
        lines += ["", "| leave-one-task-out (trained on the other two HaluEval tasks) | balanced accuracy | AUC | n | steps |",
                  "|---|---|---|---|---|"]
        for t, v in loto.items():
            lines.append(f"| {t} | {v['balanced_accuracy']:.3f} | {v['auc']:.3f} | {v['n']} | {v['steps']} |")
    ind, gr = m.get("in_domain"), m.get("label_grounding")
    if ind and gr:
        lines += ["", "Are the labels about grounding? The same held-out items; \"grounded\": every name and number of the "
                      "claim found in its evidence (string match); the shipped model trained on all three tasks' train rows "
                      "(best cutoff: chosen on these items, an upper bound).",
                  "", "| task | right grounded | hallucinated grounded | pass-if-grounded BA | shipped model in domain: BA | AUC | best-cutoff BA |",
                  "|---|---|---|---|---|---|---|"]
        for t in ind:
            g, v = gr.get(t, {}), ind[t]
            lines.append(f"| {t} | {g.get('grounded_right', float('nan')):.2f} | {g.get('grounded_hallucinated', float('nan')):.2f} | "
                         f"{g.get('rule_balanced_accuracy', float('nan')):.3f} | {v['balanced_accuracy']:.3f} | {v['auc']:.3f} | "
                         f"{v['best_balanced_accuracy']:.3f} |")
    h = m.get("hard_cases")
    if h:
        kinds = ", ".join(f"{k} {v['accuracy']:.2f} (n={v['n']})" for k, v in h["by_kind"].items())
        lines += ["", f"Hand-written hard cases: {h['accuracy']:.3f} of {h['n']} judged right ({kinds})."]
    c = m.get("cascade")
    if c:
        lines += ["", f"Lexical first stage (decides P<={c['low']} or P>={c['high']}, "
                      f"{c['share_decided_by_lexical']:.0%} of checks): gate balanced accuracy {c['gate_balanced_accuracy']:.3f}, "
                      f"hard cases {c['hard_cases']['accuracy']:.3f}."]
    p = m.get("pipeline")
    if p:
        ci = p["diff_ci95"]
        lines += ["", f"Pipeline's own answers ({p['n']} NQ-open questions, SmolLM2, cached): accuracy {p['answer_accuracy']:.3f}; "
                      f"gate flags {p['flag_rate']:.0%}; correct when passed {p['passed_correct_rate']}, when flagged "
                      f"{p['flagged_correct_rate']}; difference 95% CI {ci}.",
                  "", "| policy on flagged answers | accuracy | wrong answers | abstention |", "|---|---|---|---|"]
        for name, v in p["policies"].items():
            lines.append(f"| {name} | {v['accuracy']:.3f} | {v['wrong_rate']:.3f} | {v['abstention_rate']:.3f} |")
    cost = r.get("cost_per_1k")
    if cost:
        lines += ["", f"Cost per 1,000 checks: specialist ${cost['specialist']:.6f} "
                      f"({cost['specialist_cpu_ms_per_check']:.1f} CPU-ms per check, measured on a shared CPU), "
                      f"LLM judge priced as {cost['llm_priced_as']} ${cost['llm']:.4f}; ratio {cost['llm_over_specialist']:.0f}x."]
    return lines


def calibration_items(trained_pairs_path: Path | str, n_per_task: int = 200, seed: int = 0,
                      tasks: Sequence[str] = ("qa", "dialogue", "summarization")) -> list:
    """Length-matched items from HaluEval *train* rows of ``tasks`` the model did not train on (its ``pairs.jsonl`` names them).

    Never a held-out row: a leave-one-task-out model is calibrated on the tasks it trained on only.
    """
    from data.faithfulness import load_halueval
    from data.faithfulness_ce import length_matched, task_items, task_split
    from rerank.train import load_pairs

    used: dict[str, set[int]] = {}
    for p in load_pairs(trained_pairs_path):
        task, row = p.qid.split(":")[:2]
        used.setdefault(task, set()).add(int(row))
    out = []
    for task in tasks:
        rows = load_halueval(task)
        train, _ = task_split(task, len(rows))
        free = [i for i in train if i not in used.get(task, set())]
        out += [(task, c) for c in length_matched(task_items(task, rows, free[: 20 * n_per_task]), seed=seed,
                                                 max_items=n_per_task)]
    return out


def calibrate_threshold(scorer, items, target_precision: float = 0.8) -> dict[str, Any]:
    """The gate's pass threshold from a target (:mod:`cascade.thresholds`): precision of passed claims >= target.

    The Clopper-Pearson lower bound must meet the target; when no cutoff does, the equal-cost
    cutoff (fewest errors) is used and ``fallback`` says so. Returns the threshold and what it achieves.
    """
    from cascade.thresholds import UnattainableTargetError, achieved, derive_cost_threshold, derive_threshold

    tasks = [t for t, _ in items]
    cl = [c for _, c in items]
    y = np.array([c.label for c in cl])
    p = scorer.predict_proba([c.evidence for c in cl], [c.claim for c in cl], [c.question for c in cl])
    try:
        thr, fallback = derive_threshold(p, y, "precision", target_precision), None
    except UnattainableTargetError as exc:
        thr, fallback = derive_cost_threshold(p, y, 1.0, 1.0), f"equal-cost cutoff ({str(exc).split(':')[0]})"
    thr = float(min(max(thr, 1e-4), 1 - 1e-4))
    return {"threshold": thr, "target": {"metric": "precision", "of": "passed claims", "value": target_precision},
            "fallback": fallback, "achieved": achieved(p, y, thr, cohorts=tasks), "n": len(cl)}
