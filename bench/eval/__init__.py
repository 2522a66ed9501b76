"""Evaluation helpers shared by benchmarks, probes and recipes: IR metrics (:mod:`bench.eval.metrics`)
and the reranker evaluation over a first-stage pool (:mod:`bench.eval.rerank`)."""

__all__: list[str] = []
