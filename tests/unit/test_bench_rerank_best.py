"""bench rerank's second-round keys: the paired nDCG@10 interval against naive, the new variants' names and
arguments, and the CUDA backends' refusal on a machine without a GPU."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from bench.benchmarks.bench_rerank import PRECOMPUTED, VARIANTS, add_parser, ndcg_diff_vs_naive
from rerank.presets import PRECOMPUTED_KEEP


def _args(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    return ap.parse_args(["rerank", "--data", "x", *argv])


def test_equal_runs_have_a_zero_interval_and_meet_the_bar():
    q = {f"q{i}": float(v) for i, v in enumerate(np.linspace(0, 1, 50))}
    r = ndcg_diff_vs_naive(q, q, list(q))
    assert r["ndcg_diff"] == 0.0 and r["ndcg_diff_ci95"] == [0.0, 0.0] and r["ndcg_bar_met"]


def test_a_consistent_loss_fails_the_bar_and_the_interval_brackets_it():
    rng = np.random.default_rng(0)
    naive = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.3, 1.0, 300))}
    worse = {q: v - 0.02 + rng.normal(0, 0.05) for q, v in naive.items()}
    r = ndcg_diff_vs_naive(worse, naive, list(naive))
    lo, hi = r["ndcg_diff_ci95"]
    assert lo < r["ndcg_diff"] < hi and hi < 0 and not r["ndcg_bar_met"]


def test_missing_query_is_refused():
    with pytest.raises(ValueError, match="lack a per-query nDCG@10"):
        ndcg_diff_vs_naive({"a": 1.0}, {"a": 1.0, "b": 0.5}, ["a", "b"])


def test_new_variants_and_arguments():
    assert {"best", "best_ce", "dense_pruner", "best_r1"} <= set(VARIANTS) and set(PRECOMPUTED) <= set(VARIANTS)
    a = _args("--variants", "naive,bf16,best", "--quality-only", "--time-budget-s", "60")
    assert a.best_backend == "bf16" and a.best_keep == PRECOMPUTED_KEEP == 16 and a.best_final == "fused" and a.embedder == "minilm"
    assert _args("--best-backend", "cuda-bf16", "--device", "cuda").best_backend == "cuda-bf16"
    with pytest.raises(SystemExit):
        _args("--best-final", "rrf")


def test_cuda_backend_is_refused_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the refusal path cannot run")
    from transformers import BertConfig, BertForSequenceClassification

    from rerank.backends import make_backend

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=1))
    for backend in ("cuda-bf16", "cuda-fp16"):
        with pytest.raises(RuntimeError, match="no CUDA device"):
            make_backend(model, backend)
