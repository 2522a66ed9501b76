"""Reranking: cross-encoder scoring behind the score/rank contract (failure mode VIII)."""
from rerank.cross_encoder import CrossEncoderReranker, RankedResults

__all__ = ["CrossEncoderReranker", "RankedResults"]
