"""Truncation policy for (query, document) pairs: the query whole, the document cut to a token budget.

Failure mode VIII (Reranker on the Request Path). Attention cost grows with the square of the
pair's length and the feed-forward cost linearly, so the tokens beyond what the model needs to
judge relevance are pure latency. The policy caps the *document* side (``max_doc_tokens``) and
keeps the query whole, because cutting the query changes what is being asked; every truncation
is counted so a benchmark can say how many pairs were cut. The cost in quality is measured, not
assumed: ``ragfix bench rerank`` variant ``truncate`` reports nDCG@10 beside the full-length run.

Left out: sentence-aware or passage-window truncation (max-over-windows scoring), which costs
more forward passes, the opposite of this fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["TruncationPolicy", "EncodedPairs", "encode_pairs"]


@dataclass(frozen=True)
class TruncationPolicy:
    """How long a pair may be.

    Args:
        max_length: total tokens per pair, special tokens included (the model's limit or lower).
        max_doc_tokens: document tokens kept (``None``: whatever ``max_length`` leaves after the query).
        max_query_tokens: a query longer than this is itself cut (and counted in ``query_truncated``);
            default half of ``max_length``, so a pasted essay cannot crowd out every document.
    """

    max_length: int
    max_doc_tokens: int | None = None
    max_query_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"TruncationPolicy: max_length must be >= 8 tokens, got {self.max_length}")
        if self.max_doc_tokens is not None and self.max_doc_tokens < 1:
            raise ValueError(f"TruncationPolicy: max_doc_tokens must be >= 1 or None, got {self.max_doc_tokens}")
        if self.max_query_tokens is not None and self.max_query_tokens < 1:
            raise ValueError(f"TruncationPolicy: max_query_tokens must be >= 1 or None, got {self.max_query_tokens}")

    @property
    def query_cap(self) -> int:
        return self.max_query_tokens if self.max_query_tokens is not None else self.max_length // 2


@dataclass
class EncodedPairs:
    """Token ids per pair (unpadded), with what the policy cut."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    lengths: np.ndarray  # tokens per pair after truncation
    full_lengths: np.ndarray  # tokens per pair had nothing been cut
    truncated: int  # pairs whose document was cut
    query_truncated: int  # pairs whose query was cut


_SPECIAL_OVERHEAD_CACHE: dict[int, int] = {}


def _pair_overhead(tokenizer: Any) -> int:
    """Special tokens the tokenizer adds to a pair (3 for BERT: [CLS] q [SEP] d [SEP]; 4 for RoBERTa)."""
    key = id(tokenizer)
    if key not in _SPECIAL_OVERHEAD_CACHE:
        _SPECIAL_OVERHEAD_CACHE[key] = int(tokenizer.num_special_tokens_to_add(pair=True))
    return _SPECIAL_OVERHEAD_CACHE[key]


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]], policy: TruncationPolicy) -> EncodedPairs:
    """Tokenize pairs under ``policy`` with the model's own pair template; no padding (the batcher pads).

    Queries are grouped so each distinct query is tokenized once and each group is encoded with
    one ``max_length`` = query + document budget + special tokens (capped at ``policy.max_length``).
    """
    n = len(pairs)
    for i, (q, d) in enumerate(pairs):
        if not isinstance(q, str) or not isinstance(d, str):
            raise TypeError(f"pair {i}: query and document must be str, got ({type(q).__name__}, {type(d).__name__})")
    overhead = _pair_overhead(tokenizer)
    groups: dict[str, list[int]] = {}
    for i, (q, _) in enumerate(pairs):
        groups.setdefault(q, []).append(i)
    input_ids: list[list[int] | None] = [None] * n
    token_types: list[list[int] | None] | None = [None] * n
    lengths = np.zeros(n, dtype=np.int64)
    full = np.zeros(n, dtype=np.int64)
    truncated = query_truncated = 0
    for q, idx in groups.items():
        q_len = len(tokenizer(q, add_special_tokens=False)["input_ids"])
        docs = [pairs[i][1] for i in idx]
        d_lens = np.asarray(tokenizer(docs, add_special_tokens=False, return_length=True)["length"], dtype=np.int64)
        q_keep = min(q_len, policy.query_cap, policy.max_length - overhead - 1)
        doc_room = policy.max_length - overhead - q_keep
        if policy.max_doc_tokens is not None:
            doc_room = min(doc_room, policy.max_doc_tokens)
        max_len = q_keep + doc_room + overhead
        # subtle: "longest_first" cuts the longer side first, so with the query already within its cap
        # and max_len sized for it, only the document is cut; a long query is cut to q_keep too.
        enc = tokenizer([q] * len(idx), docs, truncation="longest_first" if q_len > q_keep else "only_second",
                        max_length=max_len, add_special_tokens=True)
        tt = enc.get("token_type_ids")
        for j, i in enumerate(idx):
            input_ids[i] = enc["input_ids"][j]
            if tt is not None and token_types is not None:
                token_types[i] = tt[j]
            else:
                token_types = None
            lengths[i] = len(enc["input_ids"][j])
            full[i] = q_len + int(d_lens[j]) + overhead
        truncated += int(np.sum(d_lens > doc_room))
        if q_len > q_keep:
            query_truncated += len(idx)
    return EncodedPairs(input_ids, token_types, lengths, full, truncated, query_truncated)  # type: ignore[arg-type]
