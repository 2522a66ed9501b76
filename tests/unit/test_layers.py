"""The one-way dependency rule (ARCHITECTURE.md) is enforced, and the enforcement can fail.

``make test`` runs ``lint-imports`` on the repository; these tests run it on a copy, once clean and
once with a violation hidden inside a function (the kind the old code had: ``from bench.registry
import ...`` in a method), so a contract that silently stopped checking would be caught.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every root package the contracts name (read from pyproject.toml, so a package added there is copied too).
PACKAGES = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["root_packages"])
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter not installed (pip install -r requirements.txt)")


def _copy(tmp: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp / pkg, ignore=shutil.ignore_patterns("__pycache__", "configs"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def _lint(tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tmp)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(tmp / "pyproject.toml")], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)


def test_contracts_hold_on_the_repository_copy(tmp_path):
    res = _lint(_copy(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"Contracts: (\d+) kept, 0 broken", res.stdout), res.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("rerank/fusion.py", "from registry import load_embedder", "rerank is not allowed to import registry"),
    ("cascade/intent.py", "import data.clinc", "cascade is not allowed to import data"),
    ("distill/ledger.py", "from bench.eval.metrics import ndcg_at_k", "distill is not allowed to import bench"),
    ("monitor/drift.py", "from rerank.fusion import zscore", "monitor is not allowed to import rerank"),
    ("rerank/engine.py", "from serve.app import create_app", "rerank is not allowed to import serve"),
    ("serve/app.py", "from bench.report import write_results", "serve is not allowed to import bench"),
    ("bench/eval/metrics.py", "from bench.cli.argtypes import positive_int", "bench.eval is not allowed to import bench.cli"),
    ("bench/report/cost.py", "from bench.benchmarks.bench_rerank import naive_scores",
     "bench.report is not allowed to import bench.benchmarks"),
])
def test_an_import_inside_a_function_breaks_the_contract(tmp_path, module, line, contract):
    tmp = _copy(tmp_path)
    with open(tmp / module, "a", encoding="utf-8") as fh:
        fh.write(f"\n\ndef _injected_violation():\n    {line}  # noqa\n")
    res = _lint(tmp)
    assert res.returncode != 0
    assert contract in res.stdout, res.stdout
