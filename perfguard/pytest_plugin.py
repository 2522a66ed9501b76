"""pytest plugin: a ``perf_guard`` fixture that checks a callable against its recorded baseline.

Enable it in your ``conftest.py``::

    pytest_plugins = ["perfguard.pytest_plugin"]

and set where baselines live (default ``perf_baseline.json`` beside the rootdir) in your ini file::

    [tool.pytest.ini_options]
    perfguard_baseline = "tests/perf/baseline.json"

Then in a test::

    def test_my_rerank_latency(perf_guard):
        perf_guard("rerank_100", lambda: my_reranker.rank(query, docs), reference=lambda: raw_forward(batch))

``pytest --perf-update`` (or ``PERFGUARD_UPDATE=1``) records the baselines for this machine class
instead of checking them.
"""
from __future__ import annotations

import os
from typing import Callable

import pytest

from perfguard.baseline import BaselineStore
from perfguard.guard import Guard, MissingBaseline, Verdict

__all__ = ["PerfGuardFixture", "perf_guard", "pytest_addoption"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("perfguard_baseline", "JSON file holding perf_guard baselines (relative to the rootdir)",
                  default="perf_baseline.json")
    parser.addini("perfguard_tolerance", "fail above baseline x this factor (after confirmations)", default="1.5")
    parser.addoption("--perf-update", action="store_true", default=False,
                     help="perfguard: record baselines for this machine class instead of checking them")


class PerfGuardFixture:
    """Callable fixture: ``perf_guard(name, workload, reference)``; fails the test on a confirmed regression."""

    def __init__(self, guard: Guard, update: bool) -> None:
        self.guard, self.update = guard, update

    def __call__(self, name: str, workload: Callable[[], object], reference: Callable[[], object]) -> Verdict | float:
        if self.update:
            return self.guard.record(name, workload, reference)
        try:
            verdict = self.guard.check(name, workload, reference)
        except MissingBaseline as exc:
            pytest.fail(f"{exc} (run pytest with --perf-update)", pytrace=False)
        if not verdict.ok:
            pytest.fail(verdict.message, pytrace=False)
        return verdict


@pytest.fixture
def perf_guard(request: pytest.FixtureRequest) -> PerfGuardFixture:
    """A :class:`PerfGuardFixture` bound to the configured baseline file."""
    config = request.config
    path = config.rootpath / config.getini("perfguard_baseline")
    update = config.getoption("--perf-update") or os.environ.get("PERFGUARD_UPDATE") == "1"
    guard = Guard(BaselineStore(path), tolerance=float(config.getini("perfguard_tolerance")))
    guard.refresh_hint = "if the change is intended, record again on a quiet machine: pytest --perf-update " + " ".join(
        str(a) for a in config.invocation_params.args)
    return PerfGuardFixture(guard, update)
