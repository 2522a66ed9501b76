"""Probes and diagnostics: one-off measurements behind a design choice (``python -m
bench.probes.probe_fusion``) and the ``ragfix diagnose ...`` commands run on users' own data."""

__all__: list[str] = []
