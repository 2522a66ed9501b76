"""Reranking: cross-encoder scoring behind the score/rank contract (failure mode VIII).

The reference :class:`CrossEncoderReranker`, and the engine that takes it off the request path:
length-aware batching, a truncation policy, bf16/int8/ONNX backends (checked by rank agreement),
a cascade, an adaptive candidate count, and cross-request micro-batching; the measured rerank stage
(:class:`FusedRerankStage`: the cross-encoder's logit fused with the first stage's BM25 and dense
scores) and the ``best`` / ``fastest`` presets (:mod:`rerank.presets`) as objects.

One ranker contract with one score scale: every ``score_pairs`` here returns logits.

Lift-out needs: retrieval (copy ``rerank/`` and ``retrieval/``; never bench, registry or data;
models are passed as folders or objects). ``tests/unit/test_liftout.py`` runs the example below
from such a copy.

Example (the project's reranker folder; any sentence-transformers CrossEncoder folder works)::

    from rerank import CrossEncoderReranker
    from retrieval import Document

    docs = [Document("31715818", "Nanotechnologies are emerging platforms that could be useful in measuring, "
                     "understanding, and manipulating stem cells.",
                     "New opportunities: the use of nanotechnologies to manipulate and track stem cells."),
            Document("14717500", "Genome-wide association studies (GWAS) have now identified at least 2,000 "
                     "common variants that appear associated with common diseases or related traits.",
                     "Rare Variants Create Synthetic Genome-Wide Associations"),
            Document("19238", "Two human Golli-MBP cDNAs have been isolated.",
                     "The human myelin basic protein gene is included within a 179-kilobase transcription unit")]
    ce = CrossEncoderReranker("models/reranker-minilm-l6")
    ranked = ce.rank("Rare variants have larger penetrance effects than common variants.", docs, top_k=2)
    print([d.id for d in ranked.documents])  # ['14717500', ...]
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
