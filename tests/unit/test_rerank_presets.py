"""rerank.presets: the measured stage, ``best`` and ``fastest`` built from model objects (no CLI, no registry).

Uses the committed cross-encoders as loaded ``CrossEncoder`` objects on fp32 (the ONNX backends are
covered by the agreement test in tests/integration/test_onnx_int8_agreement.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from rerank.candidates import AdaptiveCandidateCount, AdaptiveReranker  # noqa: E402
from rerank.cascade import CascadeReranker  # noqa: E402
from rerank.cross_encoder import CrossEncoderReranker  # noqa: E402
from rerank.engine import RerankEngine  # noqa: E402
from rerank.presets import best_stack, fastest_stack, rerank_stage  # noqa: E402
from rerank.stage import FusedRerankStage, FusionRule  # noqa: E402
from retrieval.types import Document  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "models"
_DOCS = [Document(str(i), t) for i, t in enumerate([
    "Scurvy is caused by a lack of vitamin C.",
    "The stock market closed higher on Friday.",
    "Sailors on long voyages without fresh fruit developed scurvy until citrus rations were introduced.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Vitamin C deficiency impairs collagen synthesis, which leads to bleeding gums and poor wound healing.",
    "James Lind's 1747 trial found that oranges and lemons cured scurvy among sailors.",
    "Rust forms when iron reacts with oxygen and water.",
    "Lime juice was issued to British sailors and prevented scurvy at sea.",
])]
QUERY = "what causes scurvy in sailors"


def _load(name: str):
    from sentence_transformers import CrossEncoder

    import rerank.meanpool  # noqa: F401  (the 2-layer model's mean-pool type)

    if not (MODELS / name / "model.safetensors").is_file():
        pytest.skip(f"models/{name} not in this checkout")
    return CrossEncoder(str(MODELS / name), device="cpu")


@pytest.fixture(scope="module")
def l6():
    return _load("reranker-minilm-l6")


@pytest.fixture(scope="module")
def l2():
    return _load("reranker-minilm-l2")


def _logits(model, docs=_DOCS):
    return RerankEngine(model, "fp32").score_pairs([(QUERY, d.full_text()) for d in docs])


def test_rerank_stage_wraps_the_given_model(l6):
    stage = rerank_stage(l6)
    assert isinstance(stage, FusedRerankStage) and isinstance(stage.ranker, CrossEncoderReranker)
    assert stage.ranker.model is l6 and stage.rule == FusionRule()
    bm25 = np.linspace(10, 3, len(_DOCS))
    res = stage.rank(QUERY, _DOCS, {"bm25": bm25})
    np.testing.assert_allclose(res.signals["ce"], _logits(l6), atol=1e-4)  # logits, not probabilities
    engine_stage = rerank_stage(l6, backend="int8")
    assert isinstance(engine_stage.ranker, RerankEngine) and engine_stage.ranker.backend == "int8"
    with pytest.raises(ValueError, match="backend must be one of fp32, bf16, int8, onnx, onnx-int8"):
        rerank_stage(l6, backend="fp8")
    with pytest.raises(TypeError, match="CrossEncoder or a folder path"):
        rerank_stage(42)


def test_best_is_the_cascade_over_the_two_given_models(l6, l2):
    best = best_stack(l6, l2, backend="fp32", pruner_backend="fp32", keep=3)
    assert isinstance(best, CascadeReranker) and best.keep == 3
    assert best.ranker.cross_encoder is l6 and best.pruner.cross_encoder is l2
    r = best.rank(QUERY, _DOCS)
    small, big = _logits(l2), _logits(l6)
    survivors = np.argsort(-small, kind="stable")[:3]
    assert r.order[:3].tolist() == survivors[np.argsort(-big[survivors], kind="stable")].tolist()
    assert sorted(r.order.tolist()) == list(range(len(_DOCS)))
    assert best.pairs_scored_ == len(_DOCS) + 3
    with pytest.raises(ValueError, match="pass a pruner model"):
        best_stack(l6, None, backend="fp32")
    with pytest.raises(ValueError, match="keep must be >= 1"):
        best_stack(l6, l2, keep=0)


def test_fastest_reranks_the_adaptive_head_and_keeps_the_first_stage_tail(l6):
    count = AdaptiveCandidateCount(ratio=0.5, min_k=2, max_k=8)
    fastest = fastest_stack(l6, count, backend="fp32")
    assert isinstance(fastest, AdaptiveReranker) and fastest.ranker.cross_encoder is l6
    first_stage = np.array([10.0, 9.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.0])  # ratio 0.5 of 10 keeps 4
    r = fastest.rank(QUERY, _DOCS, first_stage)
    head = _logits(l6, _DOCS[:4])
    assert r.order[:4].tolist() == np.argsort(-head, kind="stable").tolist()
    assert r.order[4:].tolist() == [4, 5, 6, 7] and np.isinf(r.scores[4:]).all()
    assert fastest.pairs_scored_ == 4
    with pytest.raises(ValueError, match="first_stage_scores has shape"):
        fastest.rank(QUERY, _DOCS, first_stage[:3])
    with pytest.raises(TypeError, match="fitted AdaptiveCandidateCount"):
        fastest_stack(l6, 0.5)


def test_presets_accept_folder_paths():
    folder = MODELS / "reranker-minilm-l6"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("models/reranker-minilm-l6 not in this checkout")
    assert rerank_stage(folder).ranker.model.max_length == rerank_stage(str(folder)).ranker.model.max_length
    with pytest.raises(FileNotFoundError, match="not a CrossEncoder folder"):
        best_stack(MODELS / "no-such-model", adaptive=AdaptiveCandidateCount())
