"""The LLM's own position curve on NQ-open with hard distractors, and orders judged on held-out questions (VII).

Context Rot: with the gold passage mid-context, many LLMs answer worse than with it at either end
(Liu et al., TACL 2024). This module measures that for the user's model:

1. :func:`build_items` -- per NQ-open oracle question, ``n_passages - 1`` hard distractors: other
   questions' gold passages nearest to the question's gold passage by embedding, never containing
   an answer string (normalised substring test).
2. :func:`position_curve` -- the gold passage at each of ``positions`` slots; per slot, the
   teacher-forced log-likelihood of the gold answer and whether the greedy answer contains an
   answer string (the paper's accuracy), with percentile-bootstrap 95% intervals.
3. :func:`evaluate_orders` -- on *held-out* questions, the passages ranked by a retriever (MiniLM
   cosine to the question, so the gold passage is not always first) and placed by each order
   (``rank``, ``reverse``, ``edges``, and the one :func:`generate.ordering.choose_order` picked from
   the curve of the other half); paired differences against ``rank`` with bootstrap intervals.

Cost: one prefill of ~``n_passages`` x ``max_words`` words per (question, position); SmolLM2-135M
needs seconds per prompt on 2 CPU cores, so the 500-question curve is a GPU job (see the README).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["RotItem", "load_nq_oracle", "build_items", "slots_for", "position_curve", "evaluate_orders", "bootstrap_ci",
           "LITM_INSTRUCTION"]

LITM_INSTRUCTION = ("Write a high-quality answer for the given question using only the provided search results "
                    "(some of which might be irrelevant). Answer with a few words.")


@dataclass(frozen=True)
class RotItem:
    question: str
    answers: list[str]
    gold: str
    distractors: list[str]  # nearest first
    retrieval_rank: int = 0  # where a retriever ranks the gold passage among all passages (0 = first)
    ranked: tuple[int, ...] = ()  # retriever order over [gold] + distractors (indices into that list)


def load_nq_oracle(path=None) -> list[tuple[str, list[str], str]]:
    """(question, answers, gold passage text) from ``lost_in_the_middle/nq-open-oracle.jsonl.gz``."""
    from bench.datasets import DatasetError, data_root, read_jsonl

    path = path or data_root() / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz"
    out = []
    for line, obj in read_jsonl(path):
        ctx = next((c for c in obj.get("ctxs", []) if c.get("isgold")), None)
        if ctx is None or not obj.get("answers"):
            raise DatasetError(f"{path}:{line}: row has no gold context or no answers")
        out.append((obj["question"], list(obj["answers"]), f"{ctx.get('title', '')}\n{ctx['text']}".strip()))
    return out


def build_items(rows: Sequence[tuple[str, list[str], str]], embedder, n_passages: int = 10, limit: int | None = None,
                seed: int = 0) -> list[RotItem]:
    """Items with ``n_passages - 1`` hard distractors each (see the module docstring); ``limit`` questions, seeded."""
    from generate.audit import has_answer

    if n_passages < 2:
        raise ValueError(f"n_passages must be >= 2, got {n_passages}")
    from retrieval.cache import EmbeddingCache

    golds = [r[2] for r in rows]
    emb = EmbeddingCache().get_or_compute(embedder.fingerprint, [str(i) for i in range(len(golds))], golds,
                                          embedder.encode_documents).copy()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    chosen = order[: limit or len(order)]
    qemb = np.asarray(embedder.encode_queries([rows[i][0] for i in chosen]), dtype=np.float32)
    qemb /= np.linalg.norm(qemb, axis=1, keepdims=True) + 1e-12
    items = []
    for row, i in enumerate(chosen):
        q, answers, gold = rows[i]
        sims = emb @ emb[i]
        picks = []
        for j in np.argsort(-sims):
            if j != i and golds[j] != gold and not has_answer(golds[j], answers):
                picks.append(int(j))
            if len(picks) == n_passages - 1:
                break
        passages = [i] + picks
        qs = emb[passages] @ qemb[row]
        ranked = tuple(int(k) for k in np.argsort(-qs, kind="stable"))
        items.append(RotItem(q, answers, gold, [golds[j] for j in picks], ranked.index(0), ranked))
    return items


def slots_for(positions: int, n_passages: int) -> list[int]:
    """``positions`` gold slots spread evenly over 0..n_passages-1 (both ends included)."""
    if not 1 <= positions <= n_passages:
        raise ValueError(f"positions must be in [1, {n_passages}], got {positions}")
    return sorted({int(round(x)) for x in np.linspace(0, n_passages - 1, positions)})


def _messages(question: str, passages: Sequence[str], max_words: int) -> list[dict]:
    from generate.prompt import truncate_words

    blocks = [f"Document [{k}] {truncate_words(p, max_words)}" for k, p in enumerate(passages, start=1)]
    user = "\n".join(blocks) + f"\n\nQuestion: {question}\nAnswer:"
    return [{"role": "system", "content": LITM_INSTRUCTION}, {"role": "user", "content": user}]


def _run(llm, question, passages, answer, max_words, max_new_tokens) -> tuple[float, str]:
    gen, ll = llm.generate_and_score(_messages(question, passages, max_words), " " + answer, max_new_tokens)
    return ll, gen.text


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("bootstrap_ci: no values")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def position_curve(llm, items: Sequence[RotItem], positions: Sequence[int], max_words: int = 100,
                   max_new_tokens: int = 16, progress: Callable[[int, int], None] | None = None) -> dict:
    """Per gold slot: mean answer log-likelihood and accuracy with 95% intervals, and the raw per-item values."""
    from generate.audit import has_answer

    ll = np.zeros((len(items), len(positions)))
    acc = np.zeros((len(items), len(positions)))
    done, total = 0, len(items) * len(positions)
    for a, it in enumerate(items):
        for b, pos in enumerate(positions):
            passages = list(it.distractors)
            passages.insert(pos, it.gold)
            ll[a, b], text = _run(llm, it.question, passages, it.answers[0], max_words, max_new_tokens)
            acc[a, b] = float(has_answer(text, it.answers))
            done += 1
            if progress:
                progress(done, total)
    per = {}
    for b, pos in enumerate(positions):
        per[str(pos)] = {"mean_loglik": float(ll[:, b].mean()), "mean_loglik_ci": bootstrap_ci(ll[:, b]),
                         "accuracy": float(acc[:, b].mean()), "accuracy_ci": bootstrap_ci(acc[:, b])}
    return {"positions": list(positions), "per_position": per, "loglik": ll.tolist(), "accuracy": acc.tolist()}


def evaluate_orders(llm, items: Sequence[RotItem], orders: dict[str, Callable[[list], list]], max_words: int = 100,
                    max_new_tokens: int = 16, progress: Callable[[int, int], None] | None = None) -> dict:
    """Each order applied to the retriever-ranked passages of every item: loglik and accuracy, paired vs ``rank``."""
    from generate.audit import has_answer

    if "rank" not in orders:
        raise ValueError("evaluate_orders needs a 'rank' order as the baseline")
    vals: dict[str, dict[str, list[float]]] = {o: {"ll": [], "acc": []} for o in orders}
    cache: dict[tuple, tuple[float, float]] = {}
    done, total = 0, len(items) * len(orders)
    for a, it in enumerate(items):
        pool = [it.gold] + list(it.distractors)
        ranked = [pool[k] for k in it.ranked]
        for name, fn in orders.items():
            placed = fn(ranked)
            key = (a, tuple(placed))
            if key not in cache:  # two orders that give the same prompt are run once
                ll, text = _run(llm, it.question, placed, it.answers[0], max_words, max_new_tokens)
                cache[key] = (ll, float(has_answer(text, it.answers)))
            vals[name]["ll"].append(cache[key][0])
            vals[name]["acc"].append(cache[key][1])
            done += 1
            if progress:
                progress(done, total)
    out = {}
    for name, v in vals.items():
        d_ll = np.array(v["ll"]) - np.array(vals["rank"]["ll"])
        d_acc = np.array(v["acc"]) - np.array(vals["rank"]["acc"])
        out[name] = {"mean_loglik": float(np.mean(v["ll"])), "mean_loglik_ci": bootstrap_ci(v["ll"]),
                     "accuracy": float(np.mean(v["acc"])), "accuracy_ci": bootstrap_ci(v["acc"]),
                     "delta_loglik_vs_rank": float(d_ll.mean()), "delta_loglik_vs_rank_ci": bootstrap_ci(d_ll),
                     "delta_accuracy_vs_rank": float(d_acc.mean()), "delta_accuracy_vs_rank_ci": bootstrap_ci(d_acc)}
    return out
