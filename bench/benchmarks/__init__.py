"""Benchmarks: baseline and fix side by side on real data, each writing a results file through
:func:`bench.report.write_results`; ``ragfix bench <name>`` registers them (:mod:`bench.cli`)."""

__all__: list[str] = []
