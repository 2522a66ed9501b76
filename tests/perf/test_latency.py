"""Latency regression tests for the request path (VIII), through perfguard.

Each workload of :mod:`bench.benchmarks.perf_workloads` is timed against its matched reference and compared
with this machine class's baseline in ``tests/perf/baseline.json`` (tolerance 1.5x, two
confirmations before failing). The second test injects a 3x slowdown into each workload and
requires the same guard to call it a regression, so a guard that has gone blind fails CI.
Record baselines on a quiet machine: ``.venv/bin/python -m pytest -q tests/perf --perf-update``.
"""
from __future__ import annotations

import pytest

from perfguard import slowed

pytestmark = pytest.mark.perf
pytest.importorskip("torch")

from bench.benchmarks.perf_workloads import WORKLOADS, build_workloads  # noqa: E402


@pytest.fixture(scope="module")
def workloads():
    ws, close = build_workloads()
    yield {w.name: w for w in ws}
    close()


@pytest.mark.parametrize("name", WORKLOADS)
def test_no_latency_regression(perf_guard, workloads, name):
    w = workloads[name]
    perf_guard(name, w.run, w.reference)


@pytest.mark.parametrize("name", WORKLOADS)
def test_injected_3x_slowdown_is_caught(perf_guard, workloads, name):
    """The guard must call a 3x slower workload a regression (else it could not catch one)."""
    if perf_guard.update:
        pytest.skip("baseline refresh run")
    w = workloads[name]
    verdict = perf_guard.guard.check(name, slowed(w.run, 3.0), w.reference)
    assert not verdict.ok, f"a 3x slowdown passed the guard: {verdict.message}"
