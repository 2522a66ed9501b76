"""bench: the ragfix CLI, dataset loaders, metrics, pipeline, benchmarks and reports."""

__all__: list[str] = []
