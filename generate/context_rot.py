"""The LLM's own position curve on NQ-open with hard distractors, and orders judged on held-out questions (VII).

Context Rot: with the gold passage mid-context, many LLMs answer worse than with it at either end
(Liu et al., TACL 2024). This module measures that for the user's model:

1. :func:`build_items` -- per NQ-open oracle question (rows from ``data.nq_open.load_nq_oracle``; this
   module takes rows, never reads a data set), ``n_passages - 1`` hard distractors: other
   questions' gold passages nearest to the question's gold passage by embedding, never containing
   an answer string (normalised substring test).
2. :func:`position_curve` -- the gold passage at each of ``positions`` slots; per slot, the
   teacher-forced log-likelihood of the gold answer and whether the greedy answer contains an
   answer string (the paper's accuracy), with percentile-bootstrap 95% intervals.
3. :func:`evaluate_orders` -- on *held-out* questions, the passages ranked by a retriever (MiniLM
   cosine to the question, so the gold passage is not always first) and placed by each order
   (``rank``, ``reverse``, ``edges``, and the one :func:`generate.ordering.choose_order` picked from
   the curve of the other half); paired differences against ``rank`` with bootstrap intervals.

Cost: one prefill of ~``n_passages`` x ``max_words`` words per (question, position), batched per
question so the greedy decode loop runs once for all positions; SmolLM2-135M in bf16 needs about
1.3 s per prompt on 2 AVX-512 BF16 cores. :class:`PromptCache` keeps every finished question, so
a killed run resumes where it stopped.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from monitor.sqlite_store import DEFAULT_BUSY_TIMEOUT_S, connect, write_transaction

__all__ = ["RotItem", "build_items", "slots_for", "position_curve", "evaluate_orders", "bootstrap_ci",
           "LITM_INSTRUCTION", "PromptCache"]

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


class PromptCache:
    """Results of (prompt, answer) runs in SQLite, so a curve of thousands of prompts survives a kill and resumes.

    The key covers the model's fingerprint, its dtype, ``max_new_tokens``, the full prompt and the
    scored answer; a row is committed per question, never half-written. Opened like the project's
    other stores (:func:`monitor.sqlite_store.connect`): WAL, so runs sharing the file read while one
    writes, and the shared busy timeout (a writer held past it raises
    :class:`~monitor.sqlite_store.StoreLockedError`); ``synchronous=NORMAL``, because a row lost to a
    power cut costs one recomputation, not money.
    """

    def __init__(self, path: str | Path | None, tag: str, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.tag = tag
        self.db = None
        self.hits = self.misses = 0
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.path, self.busy_timeout_s = Path(path), float(busy_timeout_s)
            self.db = connect(self.path, busy_timeout_s=self.busy_timeout_s, synchronous="NORMAL")
            with write_transaction(self.db, self.path, self.busy_timeout_s):
                self.db.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, loglik REAL NOT NULL, text TEXT NOT NULL)")

    def key(self, messages: list[dict], answer: str) -> str:
        import hashlib
        import json

        return hashlib.sha256(json.dumps([self.tag, messages, answer]).encode()).hexdigest()

    def get(self, key: str) -> tuple[float, str] | None:
        if self.db is None:
            return None
        row = self.db.execute("SELECT loglik, text FROM runs WHERE key = ?", (key,)).fetchone()
        self.hits += row is not None
        self.misses += row is None
        return (float(row[0]), str(row[1])) if row else None

    def put_many(self, rows: Sequence[tuple[str, float, str]]) -> None:
        if self.db is not None:
            with write_transaction(self.db, self.path, self.busy_timeout_s):
                self.db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)", rows)


def _run_many(llm, question: str, placements: Sequence[Sequence[str]], answer: str, max_words: int,
              max_new_tokens: int, cache: PromptCache | None) -> list[tuple[float, str]]:
    """(log-likelihood of ``answer``, greedy text) per passage placement, one batch per question."""
    msgs = [_messages(question, p, max_words) for p in placements]
    keys = [cache.key(m, answer) for m in msgs] if cache else [None] * len(msgs)
    got = [cache.get(k) if cache else None for k in keys]
    todo = [i for i, g in enumerate(got) if g is None]
    if todo:
        fresh = llm.generate_and_score_many([msgs[i] for i in todo], " " + answer, max_new_tokens)
        for i, (gen, ll) in zip(todo, fresh):
            got[i] = (ll, gen.text)
        if cache:
            cache.put_many([(keys[i], got[i][0], got[i][1]) for i in todo])
    return got


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (:func:`monitor.bounds.bootstrap_interval`), as a pair."""
    from monitor.bounds import bootstrap_interval

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("bootstrap_ci: no values")
    ci = bootstrap_interval(v, confidence=level, n_boot=n_boot, seed=seed)
    return ci.lower, ci.upper


def position_curve(llm, items: Sequence[RotItem], positions: Sequence[int], max_words: int = 100,
                   max_new_tokens: int = 16, progress: Callable[[int, int], None] | None = None,
                   cache: PromptCache | None = None) -> dict:
    """Per gold slot: mean answer log-likelihood and accuracy with 95% intervals, and the raw per-item values."""
    from generate.audit import has_answer

    ll = np.zeros((len(items), len(positions)))
    acc = np.zeros((len(items), len(positions)))
    total = len(items) * len(positions)
    for a, it in enumerate(items):
        placements = []
        for pos in positions:
            passages = list(it.distractors)
            passages.insert(pos, it.gold)
            placements.append(passages)
        for b, (value, text) in enumerate(_run_many(llm, it.question, placements, it.answers[0], max_words,
                                                    max_new_tokens, cache)):
            ll[a, b], acc[a, b] = value, float(has_answer(text, it.answers))
        if progress:
            progress((a + 1) * len(positions), total)
    per = {}
    for b, pos in enumerate(positions):
        per[str(pos)] = {"mean_loglik": float(ll[:, b].mean()), "mean_loglik_ci": bootstrap_ci(ll[:, b]),
                         "accuracy": float(acc[:, b].mean()), "accuracy_ci": bootstrap_ci(acc[:, b])}
    return {"positions": list(positions), "per_position": per, "loglik": ll.tolist(), "accuracy": acc.tolist()}


def evaluate_orders(llm, items: Sequence[RotItem], orders: dict[str, Callable[[list], list]], max_words: int = 100,
                    max_new_tokens: int = 16, progress: Callable[[int, int], None] | None = None,
                    cache: PromptCache | None = None) -> dict:
    """Each order applied to the retriever-ranked passages of every item: loglik and accuracy, paired vs ``rank``."""
    from generate.audit import has_answer

    if "rank" not in orders:
        raise ValueError("evaluate_orders needs a 'rank' order as the baseline")
    vals: dict[str, dict[str, list[float]]] = {o: {"ll": [], "acc": []} for o in orders}
    total = len(items) * len(orders)
    for a, it in enumerate(items):
        pool = [it.gold] + list(it.distractors)
        ranked = [pool[k] for k in it.ranked]
        placed = {name: fn(ranked) for name, fn in orders.items()}
        unique = list(dict.fromkeys(tuple(p) for p in placed.values()))  # two orders giving one prompt run once
        runs = dict(zip(unique, _run_many(llm, it.question, unique, it.answers[0], max_words, max_new_tokens, cache)))
        for name, p in placed.items():
            value, text = runs[tuple(p)]
            vals[name]["ll"].append(value)
            vals[name]["acc"].append(float(has_answer(text, it.answers)))
        if progress:
            progress((a + 1) * len(orders), total)
    out = {}
    for name, v in vals.items():
        d_ll = np.array(v["ll"]) - np.array(vals["rank"]["ll"])
        d_acc = np.array(v["acc"]) - np.array(vals["rank"]["acc"])
        out[name] = {"mean_loglik": float(np.mean(v["ll"])), "mean_loglik_ci": bootstrap_ci(v["ll"]),
                     "accuracy": float(np.mean(v["acc"])), "accuracy_ci": bootstrap_ci(v["acc"]),
                     "delta_loglik_vs_rank": float(d_ll.mean()), "delta_loglik_vs_rank_ci": bootstrap_ci(d_ll),
                     "delta_accuracy_vs_rank": float(d_acc.mean()), "delta_accuracy_vs_rank_ci": bootstrap_ci(d_acc),
                     # per question, in item order: lets later runs pool or re-test without recomputing prompts
                     "loglik_per_question": [round(float(x), 4) for x in v["ll"]],
                     "correct_per_question": [int(x) for x in v["acc"]]}
    return out
