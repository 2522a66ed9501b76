"""Context ordering by the model's own position curve, and packing into a token budget (failure mode VII).

Context Rot: an LLM under-attends to passages in some positions of its context (for many models the
middle; Liu et al., "Lost in the Middle", TACL 2024). Which positions are weak is a property of the
model, so the order is chosen from the model's measured curve (``ragfix diagnose context-rot``), not
from folklore:

- ``rank``: best passage first (what most pipelines do);
- ``reverse``: best passage last, nearest the question (the prompt puts the question after the passages);
- ``edges``: best passages at both ends, weakest in the middle (LangChain's ``LongContextReorder``);
- ``curve``: the i-th best passage goes to the i-th strongest position of the measured curve.

:func:`choose_order` scores each fixed order by the curve (expected quality when passage quality
falls with rank) and returns the best one; :class:`OrderStore` keeps the choice per model name and
fingerprint so the pipeline uses the order measured for *its* model and refuses a stale one.
:func:`pack` fits passages into a token budget after dropping near-duplicates (word-shingle Jaccard).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

__all__ = ["ORDERS", "order_positions", "reorder", "choose_order", "rank_distribution", "curve_order", "pack", "near_duplicates",
           "OrderStore", "StaleOrderError"]

T = TypeVar("T")
ORDERS = ("rank", "reverse", "edges", "curve")
_WORD = re.compile(r"\w+")


def order_positions(order: str, n: int, curve: Sequence[float] | None = None) -> list[int]:
    """``slots[i]`` = the context position of the i-th best passage, for ``n`` passages."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if order == "rank":
        return list(range(n))
    if order == "reverse":
        return list(range(n - 1, -1, -1))
    if order == "edges":
        # best at the front, 2nd at the back, 3rd second, 4th second to last, ...
        slots, lo, hi = [], 0, n - 1
        for i in range(n):
            if i % 2 == 0:
                slots.append(lo)
                lo += 1
            else:
                slots.append(hi)
                hi -= 1
        return slots
    if order == "curve":
        if curve is None:
            raise ValueError("order 'curve' needs the model's measured position curve")
        return curve_order(curve, n)
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


def _resample(curve: Sequence[float], n: int) -> np.ndarray:
    c = np.asarray(curve, dtype=float)
    if c.ndim != 1 or c.size == 0 or not np.isfinite(c).all():
        raise ValueError("curve must be a non-empty 1-D sequence of finite numbers (one value per position)")
    if c.size == n:
        return c
    # A curve measured at m positions, used for n passages: linear interpolation over relative position.
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, c.size), c) if c.size > 1 else np.repeat(c, n)


def curve_order(curve: Sequence[float], n: int) -> list[int]:
    """Slots from a curve: the strongest position gets the best passage (ties keep the earlier position)."""
    c = _resample(curve, n)
    return [int(i) for i in np.argsort(-c, kind="stable")]


def reorder(items: Sequence[T], order: str, curve: Sequence[float] | None = None) -> list[T]:
    """Place rank-ordered ``items`` (best first) into context order."""
    slots = order_positions(order, len(items), curve)
    out: list = [None] * len(items)
    for item, s in zip(items, slots):
        out[s] = item
    return out


def choose_order(curve: Sequence[float], n: int | None = None, decay: float = 0.5,
                 candidates: Sequence[str] = ("rank", "reverse", "edges"),
                 rank_weights: Sequence[float] | None = None) -> tuple[str, dict[str, float]]:
    """The fixed order that the curve favours, and every candidate's expected score.

    Passage i (0 = best) is relevant with weight ``decay ** i``, or ``rank_weights[i]`` when given
    (e.g. how often the user's retriever puts the relevant passage at rank i, see
    :func:`rank_distribution`); an order's score is the sum of weight x curve value at the passage's
    slot. A flat curve scores every order alike and the first candidate (``rank``) is kept: no
    reorder without evidence for one.
    """
    n = n or len(curve)
    c = _resample(curve, n)
    if rank_weights is not None:
        w = np.asarray(rank_weights, dtype=float)
        if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"rank_weights must be {n} finite non-negative numbers with a positive sum, got {list(w)}")
    else:
        w = decay ** np.arange(n)
    scores = {o: float(sum(w[i] * c[s] for i, s in enumerate(order_positions(o, n)))) for o in candidates}
    best = max(candidates, key=lambda o: (round(scores[o], 12), -list(candidates).index(o)))
    return best, scores


def rank_distribution(ranks: Sequence[int], n: int, smoothing: float = 1.0) -> list[float]:
    """Share of questions whose relevant passage the retriever put at rank i (0..n-1), add-``smoothing``
    smoothed: the ``rank_weights`` of :func:`choose_order` measured on the user's own retrieval."""
    counts = np.full(n, float(smoothing))
    for r in ranks:
        if not 0 <= int(r) < n:
            raise ValueError(f"rank {r} outside 0..{n - 1}")
        counts[int(r)] += 1
    return (counts / counts.sum()).tolist()


def _shingles(text: str, k: int = 3) -> set[tuple[str, ...]]:
    w = _WORD.findall(text.lower())
    return {tuple(w[i: i + k]) for i in range(max(1, len(w) - k + 1))}


def near_duplicates(texts: Sequence[str], threshold: float = 0.8) -> list[int]:
    """Indices of texts whose 3-word-shingle Jaccard with an earlier kept text is >= ``threshold``."""
    kept: list[set] = []
    dup = []
    for i, t in enumerate(texts):
        s = _shingles(t)
        if any(len(s & k) / max(1, len(s | k)) >= threshold for k in kept):
            dup.append(i)
        else:
            kept.append(s)
    return dup


def pack(texts: Sequence[str], budget_tokens: int, count_tokens: Callable[[str], int],
         dedup_threshold: float = 0.8) -> tuple[list[int], dict]:
    """Indices of rank-ordered ``texts`` that fit ``budget_tokens`` after near-duplicate removal.

    Passages are taken best first; one that does not fit is skipped (a shorter later one may fit).
    Returns (kept indices in rank order, counts: duplicates dropped, over budget dropped, tokens used).
    """
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be >= 1, got {budget_tokens}")
    dups = set(near_duplicates(texts, dedup_threshold))
    kept, used, over = [], 0, 0
    for i, t in enumerate(texts):
        if i in dups:
            continue
        n = count_tokens(t)
        if used + n > budget_tokens:
            over += 1
            continue
        kept.append(i)
        used += n
    return kept, {"duplicates": len(dups), "over_budget": over, "tokens": used}


class StaleOrderError(ValueError):
    """The stored order was measured on another model (fingerprint mismatch)."""


class OrderStore:
    """JSON file of ``{model name: {fingerprint, order, curve, measured_on}}`` (atomic writes).

    ``get(name, fingerprint)`` returns the stored order, ``"rank"`` when none is stored, and raises
    :class:`StaleOrderError` when the stored curve belongs to other weights.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not valid JSON ({exc}); delete it and re-run `ragfix diagnose context-rot`") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: expected a JSON object of model name -> order")
        return data

    def put(self, name: str, fingerprint: str, order: str, curve: Sequence[float], measured_on: str) -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        data = self._read()
        data[name] = {"fingerprint": fingerprint, "order": order, "curve": [float(x) for x in curve], "measured_on": measured_on}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)

    def get(self, name: str, fingerprint: str) -> tuple[str, list[float] | None]:
        entry = self._read().get(name)
        if entry is None:
            return "rank", None
        if entry["fingerprint"] != fingerprint:
            raise StaleOrderError(f"{self.path}: the order for {name!r} was measured on weights {entry['fingerprint']}, "
                                  f"this model is {fingerprint}; re-run `ragfix diagnose context-rot --model {name}`")
        return entry["order"], entry.get("curve")
