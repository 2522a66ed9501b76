"""The rerank engine: truncation policy + length-aware token-budget batches + a numeric backend.

Failure mode VIII (Reranker on the Request Path). ``CrossEncoder.predict`` pads batches of 32 in
input order to the longest pair, at the model's full length, in fp32. :class:`RerankEngine` keeps
the same model and the same ``score`` / ``rank`` contract as
:class:`rerank.cross_encoder.CrossEncoderReranker` (the reference it is tested against) and
changes only how the work is done: documents cut to a token budget with the query kept whole
(:mod:`rerank.truncation`), pairs sorted by length and batched by padded-token budget
(:mod:`rerank.batching`), and an fp32 / bf16 / int8 / ONNX backend (:mod:`rerank.backends`).

Measured by ``ragfix bench rerank`` (variants ``length``, ``truncate``, ``int8``, ``bf16``, ``best``).
It counts what it did (``pairs_scored_``, ``truncated_``, ``batch_sizes_``, ``tokens_``,
``padded_tokens_``): the diagnostic half of VIII is seeing batches of 1/4/8 where K was possible.

Example:
    >>> eng = RerankEngine(CrossEncoder("models/reranker-minilm-l6"), backend="int8", max_doc_tokens=96)  # doctest: +SKIP
    >>> eng.rank("what causes scurvy", docs, top_k=10).documents                                        # doctest: +SKIP
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rerank.backends import BACKENDS, make_backend
from rerank.batching import padded_tokens, plan_batches
from rerank.cross_encoder import PairRanker
from rerank.truncation import EncodedPairs, TruncationPolicy, encode_pairs

__all__ = ["RerankEngine"]


class RerankEngine(PairRanker):
    """A cross-encoder scorer with length-aware batching, a truncation policy and a choice of backend.

    Args:
        model: a ``sentence_transformers.CrossEncoder`` or a path to one (registry names go
            through ``registry.load_cross_encoder(...).model``).
        backend: one of ``rerank.backends.BACKENDS``.
        max_tokens_per_batch: padded-token budget per forward pass (replaces a fixed batch size).
        max_batch: optional cap on pairs per forward pass.
        max_length: tokens per pair (default: the model's own ``max_length``).
        max_doc_tokens: document tokens kept per pair (default: all that fit).
        length_sort: ``False`` keeps input order in fixed batches of ``max_batch`` (the naive plan,
            for ablations).
        name: shown in reports.
    """

    def __init__(self, model: Any, backend: str = "fp32", max_tokens_per_batch: int = 4096,
                 max_batch: int | None = None, max_length: int | None = None, max_doc_tokens: int | None = None,
                 length_sort: bool = True, name: str | None = None, cache_dir: Path | str | None = None) -> None:
        if isinstance(model, (str, Path)):
            from sentence_transformers import CrossEncoder

            import rerank.meanpool  # noqa: F401  (registers the mean-pool model type)

            model = CrossEncoder(str(model), device="cpu")
        if backend not in BACKENDS:
            raise ValueError(f"RerankEngine: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if not length_sort and max_batch is None:
            raise ValueError("RerankEngine: length_sort=False needs a fixed max_batch (e.g. 32)")
        self.cross_encoder = model
        self.tokenizer = model.tokenizer
        model_max = int(model.max_length or model.tokenizer.model_max_length)
        self.policy = TruncationPolicy(min(max_length or model_max, model_max), max_doc_tokens)
        self.backend = backend
        self.forward = make_backend(model.model, backend, cache_dir=cache_dir)
        self.max_tokens_per_batch = int(max_tokens_per_batch)
        self.max_batch = max_batch
        self.length_sort = length_sort
        self.name = name or f"{Path(str(getattr(model.model.config, '_name_or_path', 'cross-encoder'))).name}:{backend}"
        self.config = getattr(model.model, "config", None)
        self._pad_id = int(self.tokenizer.pad_token_id or 0)
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()
        self.pairs_scored_ = 0
        self.truncated_ = 0
        self.tokens_ = 0
        self.padded_tokens_ = 0
        self.batch_sizes_: list[int] = []

    # -- the two steps, public so the micro-batcher can encode per request and batch across requests
    def encode(self, pairs: Sequence[tuple[str, str]]) -> EncodedPairs:
        """Tokenize ``pairs`` under this engine's truncation policy (no padding).

        Thread-safe: a Hugging Face fast tokenizer changes its truncation state per call and fails
        (``Truncation error: Second sequence not provided``, ``Already borrowed``) when two threads
        use it at once; the micro-batcher encodes in each caller's thread, so calls are serialised.
        """
        with self._tok_lock:
            return encode_pairs(self.tokenizer, pairs, self.policy)

    def score_encoded(self, enc: EncodedPairs) -> np.ndarray:
        """Logits for encoded pairs, in input order: planned into token-budget batches, padded per batch."""
        n = len(enc.input_ids)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        if self.length_sort:
            batches = plan_batches(enc.lengths, self.max_tokens_per_batch, self.max_batch)
        else:
            batches = [np.arange(i, min(i + self.max_batch, n)) for i in range(0, n, self.max_batch)]  # type: ignore[arg-type]
        out = np.empty(n, dtype=np.float32)
        for b in batches:
            width = int(enc.lengths[b].max())
            ids = np.full((len(b), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(b), width), dtype=np.int64)
            tt = np.zeros((len(b), width), dtype=np.int64) if enc.token_type_ids is not None else None
            for r, i in enumerate(b):
                L = int(enc.lengths[i])
                ids[r, :L] = enc.input_ids[i]
                mask[r, :L] = 1
                if tt is not None:
                    tt[r, :L] = enc.token_type_ids[i]  # type: ignore[index]
            out[b] = self.forward(ids, mask, tt)
        if not np.isfinite(out).all():
            raise FloatingPointError(f"{self.name}: non-finite scores for {int((~np.isfinite(out)).sum())} pairs")
        with self._lock:
            self.pairs_scored_ += n
            self.truncated_ += enc.truncated
            self.tokens_ += int(enc.lengths.sum())
            self.padded_tokens_ += padded_tokens(enc.lengths, batches)
            self.batch_sizes_.extend(len(b) for b in batches)
        return out

    # -- the ranker contract shared with CrossEncoderReranker
    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Logits (raw model outputs, no sigmoid) for each (query, document text) pair."""
        return self.score_encoded(self.encode(pairs))
