"""Length-aware batching: sort pairs by token length and fill each batch up to a token budget.

Failure mode VIII (Reranker on the Request Path). A fixed batch size pads every pair in a batch to
the longest one, so one long abstract makes 31 short pairs pay for its length, and a fixed size
over- or under-fills the machine depending on how long the texts are. The fix: order pairs by
token length so neighbours are alike, then cut batches by a budget of *padded* tokens
(``batch_len x longest_in_batch``) rather than by a count. Padding waste falls and every forward
pass does about the same amount of work.

Measured by ``ragfix bench rerank`` (variant ``length``: same model, same scores, less padding).
Left out: bucketing across requests (that is :mod:`rerank.microbatch`, which reuses this plan).

Example:
    >>> plan_batches([5, 100, 7, 98], max_tokens=200)
    [array([0, 2]), array([3, 1])]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["plan_batches", "padded_tokens"]


def plan_batches(lengths: Sequence[int], max_tokens: int, max_batch: int | None = None) -> list[np.ndarray]:
    """Indices into ``lengths`` grouped into batches, shortest pairs first.

    Args:
        lengths: token count of each pair (special tokens included, after truncation).
        max_tokens: budget of padded tokens per batch (``len(batch) * max(lengths[batch])``).
            A single pair longer than the budget still gets a batch of its own.
        max_batch: optional cap on pairs per batch.

    Returns:
        list of int arrays; every index appears exactly once.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lens.shape}")
    if lens.size and lens.min() < 1:
        raise ValueError("lengths must all be >= 1 token")
    # Stable sort: equal lengths keep input order, so the plan is deterministic.
    order = np.argsort(lens, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        end = start + 1
        # Sorted ascending, so the pair being added is always the longest in the batch.
        while end < n and (end + 1 - start) * lens[order[end]] <= max_tokens and (max_batch is None or end - start < max_batch):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def padded_tokens(lengths: Sequence[int], batches: Sequence[np.ndarray]) -> int:
    """Tokens actually computed (padding included) when ``batches`` are each padded to their longest pair."""
    lens = np.asarray(lengths)
    return int(sum(len(b) * int(lens[b].max()) for b in batches if len(b)))
