"""Reranking: cross-encoder scoring behind the score/rank contract (failure mode VIII).

The reference :class:`CrossEncoderReranker`, and the engine that takes it off the request path:
length-aware batching, a truncation policy, bf16/int8/ONNX backends (checked by rank agreement),
a cascade, an adaptive candidate count, and cross-request micro-batching.
"""
from rerank.agreement import RankAgreement, rank_agreement
from rerank.backends import BACKENDS, cpu_has_native_bf16, make_backend
from rerank.batching import padded_tokens, plan_batches
from rerank.candidates import AdaptiveCandidateCount
from rerank.cascade import CascadeReranker
from rerank.cross_encoder import CrossEncoderReranker, PairRanker, RankedResults
from rerank.engine import RerankEngine
from rerank.microbatch import MicroBatcher
from rerank.truncation import EncodedPairs, TruncationPolicy, encode_pairs

__all__ = ["CrossEncoderReranker", "PairRanker", "RankedResults", "RerankEngine", "CascadeReranker", "MicroBatcher",
           "AdaptiveCandidateCount", "TruncationPolicy", "EncodedPairs", "encode_pairs", "plan_batches",
           "padded_tokens", "BACKENDS", "make_backend", "cpu_has_native_bf16", "RankAgreement", "rank_agreement"]
