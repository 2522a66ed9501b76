"""Lift-out (issue 14, item 3): each fix package, copied with only the packages it declares, runs its example.

Every fix package's ``__init__`` docstring says ``Lift-out needs: ...`` and gives an ``Example::``.
For each package this test

1. checks the declaration against the import graph (grimp, which sees imports inside functions
   too): everything the package imports from this repository is declared, and never ``bench``,
   ``registry`` or ``data``;
2. copies the package and the declared ones into an empty folder, starts a fresh interpreter there
   (``cwd`` and ``PYTHONPATH`` the copy, this checkout's editable-install finder removed), checks
   that ``bench``, ``registry``, ``data`` and every undeclared fix package are NOT importable,
   imports every module of the package, and runs the docstring example plus a check of its result.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX = ("retrieval", "rerank", "generate", "cascade", "distill", "monitor", "perfguard")
UPPER = ("bench", "registry", "data")

# What each example must have produced (run after the example, in the same namespace).
CHECKS = {
    "retrieval": "assert docs[int(hits.indices[0][0])].id == '14717500', hits",
    "rerank": "assert ranked.documents[0].id == '14717500', ranked",
    "generate": "assert parse_citations('Synthetic genome-wide associations [1].', docs[1:]) == ['14717500']\n"
                "assert '[1]' in messages[-1]['content'] and 'What do rare variants create?' in messages[-1]['content']",
    "cascade": "assert derive_threshold(scores, labels, 'recall', 0.6, bound='point') == 0.8",
    "distill": "rows = Ledger.open('ledger.sqlite').by_task()\n"
               "assert len(rows) == 1 and rows[0]['task'] == 'intent' and abs(rows[0]['usd'] - 0.0001242) < 1e-12, rows",
    "perfguard": "assert verdict.ok and not regressed.ok, (verdict.message, regressed.message)",
    "monitor": "assert abs(clopper_pearson(7, 10).estimate - 0.7) < 1e-12\n"
               "assert KSDrift(np.random.default_rng(0).normal(size=500)).predict(np.random.default_rng(1).normal(1.0, size=200)).is_drift",
}
SLOW = {"rerank"}  # loads a cross-encoder (about 20 s on 2 cores): integration

_BOOT = '''
import importlib, importlib.util, pkgutil, sys
# subtle: the development venv installs this checkout in editable mode; its finder would import any
# package the copy lacks from the checkout and hide a missing dependency. Remove it.
sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks if not str(getattr(h, "__module__", "")).startswith("__editable__")]
sys.path_importer_cache.clear()
absent = {absent!r}
found = [m for m in absent if importlib.util.find_spec(m) is not None]
if found:
    raise SystemExit(f"LIFTOUT: importable from the copy but must not be: {{found}} "
                     f"({{[importlib.util.find_spec(m).origin for m in found]}})")
pkg = importlib.import_module({pkg!r})
for info in pkgutil.walk_packages(pkg.__path__, {pkg!r} + "."):
    importlib.import_module(info.name)
'''


def _doc(pkg: str) -> str:
    import ast

    return ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text(encoding="utf-8"))) or ""


def declared(pkg: str) -> list[str]:
    m = re.search(r"Lift-out needs: ([a-z, ]+)", _doc(pkg))
    if not m:
        raise AssertionError(f"{pkg}/__init__.py: docstring has no 'Lift-out needs: ...' line")
    names = [n.strip() for n in m.group(1).replace(" and ", ",").split(",") if n.strip()]
    return [] if names == ["nothing"] else names


def example(pkg: str) -> str:
    doc = _doc(pkg)
    m = re.search(r"Example[^\n]*::\n\n((?:    .*\n|\n)+)", doc + "\n")
    if not m:
        raise AssertionError(f"{pkg}/__init__.py: docstring has no 'Example::' block")
    return textwrap.dedent(m.group(1))


def _closure(graph, pkg: str) -> set[str]:
    """Top-level repository packages ``pkg`` imports, directly or through them (function-level imports included)."""
    seen, todo = set(), [pkg]
    while todo:
        cur = todo.pop()
        for mod in graph.find_descendants(cur) | {cur}:
            for dep in graph.find_modules_directly_imported_by(mod):
                top = dep.split(".")[0]
                if top != cur and top not in seen and top in FIX + UPPER:
                    seen.add(top)
                    todo.append(top)
    seen.discard(pkg)
    return seen


def test_declarations_match_the_import_graph():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(*(p for p in FIX + UPPER if (ROOT / p).is_dir()), cache_dir=None)
    for pkg in FIX:
        needs = _closure(graph, pkg)
        assert not needs & set(UPPER), f"{pkg} imports {sorted(needs & set(UPPER))}"
        assert needs == set(declared(pkg)), (
            f"{pkg}/__init__.py declares {sorted(declared(pkg))}, the import graph needs {sorted(needs)}")


def _run_liftout(pkg: str, tmp: Path) -> subprocess.CompletedProcess:
    for name in [pkg, *declared(pkg)]:
        shutil.copytree(ROOT / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp / "models").mkdir()
    for model in ("reranker-minilm-l6",):  # the example's input, not code
        (tmp / "models" / model).symlink_to(ROOT / "models" / model, target_is_directory=True)
    absent = [p for p in FIX + UPPER if p != pkg and p not in declared(pkg)]
    script = _BOOT.format(absent=absent, pkg=pkg) + "\n" + example(pkg) + "\n" + CHECKS[pkg] + "\nprint('LIFTOUT-OK')\n"
    (tmp / "_liftout.py").write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(tmp), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAGFIX_CACHE=str(tmp / ".cache"),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "_liftout.py"], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("pkg", [pytest.param(p, marks=pytest.mark.integration) if p in SLOW else p for p in FIX])
def test_package_runs_its_example_from_a_bare_copy(pkg, tmp_path):
    res = _run_liftout(pkg, tmp_path)
    assert res.returncode == 0 and "LIFTOUT-OK" in res.stdout, f"{pkg}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


def test_a_missing_declared_package_is_caught(tmp_path):
    """The harness can fail: rerank copied without retrieval cannot import (the old failure of issue 14)."""
    shutil.copytree(ROOT / "rerank", tmp_path / "rerank", ignore=shutil.ignore_patterns("__pycache__"))
    script = _BOOT.format(absent=["bench", "registry", "data", "retrieval"], pkg="rerank")
    (tmp_path / "_liftout.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    res = subprocess.run([sys.executable, "_liftout.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "No module named 'retrieval'" in res.stderr, res.stderr[-2000:]
