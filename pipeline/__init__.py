"""The product: retrieve -> rerank -> generate -> gate, every stage timed and counted.

``pipeline`` composes the fix packages (``retrieval``, ``rerank``, ``generate``); ``bench`` (the CLI,
the benchmarks, the demo) imports it, never the reverse. Its default rerank stage is the measured
one (:class:`rerank.stage.FusedRerankStage`).
"""
from pipeline.pipeline import Pipeline, PipelineResult, StageTiming

__all__ = ["Pipeline", "PipelineResult", "StageTiming"]
