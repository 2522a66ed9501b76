"""Reranking: cross-encoder scoring behind the score/rank contract (failure mode VIII).

The reference :class:`CrossEncoderReranker`, and the engine that takes it off the request path:
length-aware batching, a truncation policy, bf16/int8/ONNX backends (checked by rank agreement),
a cascade, an adaptive candidate count, and cross-request micro-batching; the measured rerank stage
(:class:`FusedRerankStage`: the cross-encoder's logit fused with the first stage's BM25 and dense
scores) and the ``best`` / ``fastest`` presets (:mod:`rerank.presets`) as objects.

One ranker contract with one score scale: every ``score_pairs`` here returns logits.
"""
from rerank.agreement import RankAgreement, rank_agreement
from rerank.backends import BACKENDS, cpu_has_native_bf16, make_backend
from rerank.batching import padded_tokens, plan_batches
from rerank.candidates import AdaptiveCandidateCount, AdaptiveReranker
from rerank.cascade import CascadeReranker
from rerank.cross_encoder import CrossEncoderReranker, PairRanker, RankedResults
from rerank.engine import RerankEngine
from rerank.microbatch import MicroBatcher
from rerank.presets import best_stack, fastest_stack, rerank_stage
from rerank.stage import FusedRanking, FusedRerankStage, FusionRule
from rerank.truncation import EncodedPairs, TruncationPolicy, encode_pairs

__all__ = ["CrossEncoderReranker", "PairRanker", "RankedResults", "RerankEngine", "CascadeReranker", "MicroBatcher",
           "AdaptiveCandidateCount", "AdaptiveReranker", "FusedRerankStage", "FusionRule", "FusedRanking",
           "rerank_stage", "best_stack", "fastest_stack", "TruncationPolicy", "EncodedPairs", "encode_pairs", "plan_batches",
           "padded_tokens", "BACKENDS", "make_backend", "cpu_has_native_bf16", "RankAgreement", "rank_agreement"]
