"""The rerank configurations the project measures, as objects: the stage, ``best`` and ``fastest``.

Failure mode VIII (Reranker on the Request Path). ``ragfix bench rerank`` reports these exact
objects (variants ``best`` and ``fastest``), ``ragfix train eval-reranker`` the stage; the CLI only
turns its arguments into the constructor arguments below, so what is measured is what a user
builds here. Every constructor takes model objects (a sentence-transformers ``CrossEncoder``) or
paths to CrossEncoder folders, never registry names or CLI arguments.

- :func:`rerank_stage`: the measured rerank stage, :class:`rerank.stage.FusedRerankStage` (the
  cross-encoder's logit fused with BM25 and dense scores by z-score CombSUM, weights 1) over the
  fp32 reference :class:`rerank.CrossEncoderReranker`, or over a :class:`rerank.RerankEngine` on
  another backend.
- :func:`best_stack`: the cascade. The pruner (2-layer) on ``pruner_backend`` scores all K, the
  model on ``backend`` ranks the ``keep`` best, length-aware token-budget batches; without a
  pruner, the adaptive candidate count in front of the model instead.
- :func:`best_precomputed_stack`: the second round's ``best`` (issue 21): the precomputed pruner
  (:class:`rerank.precomputed.PrecomputedPruner`: query embedding against index-time document vectors,
  z-fused with the first-stage score) over all K, the model on ``backend`` (bf16, the one precision that
  kept the ranking) over the ``keep`` best, final order by the fused stage's rule over them (or the
  logit alone, ``final="ce"``).
- :func:`fastest_stack`: the adaptive candidate count (fitted on a training split) in front of the
  model on ``backend`` (ONNX int8), length-aware batches; below the cut the first stage's order stays.

The defaults are the values the committed results were measured with (``results/rerank*.json``):
ONNX Runtime dynamic int8 for both models, ``keep=20``, a 4096 padded-token budget per forward pass.

Example::

    >>> from sentence_transformers import CrossEncoder                         # doctest: +SKIP
    >>> best = best_stack(CrossEncoder("models/reranker-minilm-l6"), CrossEncoder("models/reranker-minilm-l2"))  # doctest: +SKIP
    >>> best.rank(query, docs).documents[:10]                                  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rerank.backends import BACKENDS
from rerank.candidates import AdaptiveCandidateCount, AdaptiveReranker
from rerank.cascade import CascadeReranker
from rerank.engine import RerankEngine
from rerank.precomputed import DEFAULT_KEEP, PrecomputedPruner, PrunedRerank
from rerank.stage import FusedRerankStage, FusionRule

__all__ = ["BEST_BACKEND", "FASTEST_BACKEND", "BEST_KEEP", "TOKEN_BUDGET", "PRECOMPUTED_BACKEND", "PRECOMPUTED_KEEP",
           "rerank_stage", "best_stack", "best_precomputed_stack", "fastest_stack"]

BEST_BACKEND = "onnx-int8"
FASTEST_BACKEND = "onnx-int8"
BEST_KEEP = 20
TOKEN_BUDGET = 4096
PRECOMPUTED_BACKEND = "bf16"
# 16 pairs: the 8x budget (about 300 ms against naive's 2.4 s per 100 SciFact pairs) at about 13 ms per
# bf16 pair leaves ~16 after query encoding with a margin for a shared machine; the keep sweep of the
# quality runs (probe_best_keep) shows 16 and 20 inside the quality rule on both corpora.
PRECOMPUTED_KEEP = DEFAULT_KEEP

Model = Any  # a sentence_transformers.CrossEncoder, or a str / Path to a CrossEncoder folder


def _check_backend(param: str, backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"{param} must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _cross_encoder(model: Model, param: str) -> Any:
    if isinstance(model, (str, Path)):
        if not Path(model).is_dir():
            raise FileNotFoundError(f"{param}: {model} is not a CrossEncoder folder")
        from sentence_transformers import CrossEncoder

        import rerank.meanpool  # noqa: F401  (registers the 2-layer model's mean-pool type)

        return CrossEncoder(str(model), device="cpu")
    if not hasattr(model, "model") or not hasattr(model, "tokenizer"):
        raise TypeError(f"{param}: expected a sentence_transformers.CrossEncoder or a folder path, got {type(model).__name__}")
    return model


def rerank_stage(model: Model, backend: str = "fp32", rule: FusionRule | None = None,
                 max_length: int | None = None) -> FusedRerankStage:
    """The measured rerank stage over ``model``.

    ``backend="fp32"`` scores with :class:`rerank.CrossEncoderReranker` (the reference the
    0.755 was measured with); any other :data:`rerank.backends.BACKENDS` entry with a
    :class:`rerank.RerankEngine` (same contract, logits). ``model`` may also be an already built
    ranker (anything with ``score_pairs``), used as it is.
    """
    _check_backend("rerank_stage: backend", backend)
    if hasattr(model, "score_pairs"):
        return FusedRerankStage(model, rule)
    ce = _cross_encoder(model, "rerank_stage: model")
    if backend == "fp32":
        from rerank.cross_encoder import CrossEncoderReranker

        return FusedRerankStage(CrossEncoderReranker(ce, max_length=max_length), rule)
    return FusedRerankStage(RerankEngine(ce, backend=backend, max_length=max_length), rule)


def best_stack(model: Model, pruner: Model | None = None, *, adaptive: AdaptiveCandidateCount | None = None,
               backend: str = BEST_BACKEND, pruner_backend: str = BEST_BACKEND, keep: int = BEST_KEEP,
               max_tokens_per_batch: int = TOKEN_BUDGET, ranker_doc_tokens: int | None = None,
               pruner_doc_tokens: int | None = None, cache_dir: Path | str | None = None) -> CascadeReranker | AdaptiveReranker:
    """``best``: the pruner cascade (``CascadeReranker(pruner engine, model engine, keep)``).

    Without ``pruner``, ``adaptive`` (a fitted :class:`rerank.AdaptiveCandidateCount`) in front of
    the model engine instead; one of the two is required. Returns an object with ``rank`` (the
    cascade's ``rank(query, docs)``, or the adaptive ranker's ``rank(query, docs, first_stage_scores)``).
    """
    _check_backend("best_stack: backend", backend)
    _check_backend("best_stack: pruner_backend", pruner_backend)
    if keep < 1:
        raise ValueError(f"best_stack: keep must be >= 1, got {keep}")
    ranker = RerankEngine(_cross_encoder(model, "best_stack: model"), backend, max_tokens_per_batch=max_tokens_per_batch,
                          max_doc_tokens=ranker_doc_tokens, cache_dir=cache_dir)
    if pruner is not None:
        small = RerankEngine(_cross_encoder(pruner, "best_stack: pruner"), pruner_backend,
                             max_tokens_per_batch=max_tokens_per_batch, max_doc_tokens=pruner_doc_tokens, cache_dir=cache_dir)
        return CascadeReranker(small, ranker, keep=keep, name="best")
    if adaptive is None:
        raise ValueError("best_stack: pass a pruner model (the cascade) or a fitted AdaptiveCandidateCount as adaptive=")
    return AdaptiveReranker(ranker, adaptive, name="best")


def best_precomputed_stack(model: Model, embedder: Any, doc_index: Any, *, keep: int = PRECOMPUTED_KEEP,
                           backend: str = PRECOMPUTED_BACKEND, final: str = "fused",
                           max_tokens_per_batch: int = TOKEN_BUDGET, cache_dir: Path | str | None = None,
                           name: str = "best", gap: float | None = None, min_keep: int = 8):
    """``best`` (second round): ``PrunedRerank(PrecomputedPruner(embedder, doc_index), model engine, keep, final)``.

    ``doc_index`` is a :class:`rerank.precomputed.DocVectorIndex` built with ``embedder`` (same
    fingerprint, else ``ValueError``). Returns an object with ``rank(query, docs, first_stage_scores)``.
    """
    _check_backend("best_precomputed_stack: backend", backend)
    ranker = RerankEngine(_cross_encoder(model, "best_precomputed_stack: model"), backend,
                          max_tokens_per_batch=max_tokens_per_batch, cache_dir=cache_dir)
    return PrunedRerank(PrecomputedPruner(embedder, doc_index), ranker, keep=keep, final=final, name=name,
                        gap=gap, min_keep=min_keep)


def fastest_stack(model: Model, adaptive: AdaptiveCandidateCount, *, backend: str = FASTEST_BACKEND,
                  max_tokens_per_batch: int = TOKEN_BUDGET, cache_dir: Path | str | None = None) -> AdaptiveReranker:
    """``fastest``: the adaptive candidate count in front of the model on ``backend`` (length-aware batches)."""
    _check_backend("fastest_stack: backend", backend)
    if not isinstance(adaptive, AdaptiveCandidateCount):
        raise TypeError(f"fastest_stack: adaptive must be a fitted AdaptiveCandidateCount, got {type(adaptive).__name__}")
    engine = RerankEngine(_cross_encoder(model, "fastest_stack: model"), backend, max_tokens_per_batch=max_tokens_per_batch,
                          cache_dir=cache_dir)
    return AdaptiveReranker(engine, adaptive, name="fastest")
