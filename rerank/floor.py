"""The arithmetic floor of a cross-encoder rerank: its FLOPs over a matmul rate measured now.

Failure mode VIII (Reranker on the Request Path). Before tuning, know how far from the floor you
are: if the naive rerank already runs near FLOPs / (measured GEMM rate), no batching trick will
make it much faster, and speed must come from doing less work (fewer pairs, shorter pairs, fewer
layers) or from moving it off the critical path. ``ragfix bench rerank`` reports ``floor_ms``
beside every variant, with the matmul rate measured in the same run (the machine is shared, so a
rate from another day is not comparable).

FLOPs count multiply-adds as 2 and cover the encoder's dense layers and attention
(QK^T and AV); embeddings, layer norms and softmax are left out (they are memory-bound, small).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

__all__ = ["encoder_flops", "config_flops", "matmul_gflops"]


def encoder_flops(lengths: Sequence[int], hidden: int, layers: int, intermediate: int) -> float:
    """FLOPs of a BERT-style encoder over sequences of the given (unpadded) lengths."""
    L = np.asarray(lengths, dtype=np.float64)
    dense = 2.0 * (4 * hidden * hidden + 2 * hidden * intermediate) * L.sum()
    attention = 2.0 * 2.0 * hidden * np.sum(L * L)
    return float(layers * (dense + attention))


def config_flops(lengths: Sequence[int], config: Any) -> float:
    """:func:`encoder_flops` from a ``transformers`` config."""
    return encoder_flops(lengths, int(config.hidden_size), int(config.num_hidden_layers), int(config.intermediate_size))


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 GEMM rate (GFLOP/s) with torch's current thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool and MKL dispatch
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9
