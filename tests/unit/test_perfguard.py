"""perfguard: baselines per machine class, the confirm-before-fail decision, the CLI and the README example."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perfguard import BaselineStore, Guard, MachineClass, machine_class, slowed
from perfguard.guard import MissingBaseline
from perfguard.measure import Measurement

ROOT = Path(__file__).resolve().parents[2]
AVX512 = MachineClass("x86_64", "Xeon A", ("avx2", "fma", "avx512f", "avx512_bf16"))
AVX2 = MachineClass("x86_64", "EPYC B", ("avx2", "fma"))
ARM = MachineClass("aarch64", "Neoverse", ("asimd",))


def test_machine_class_reads_model_and_kernel_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some  CPU @ 2GHz\nflags\t\t: fpu sse avx2 fma avx512f amx_tile\n"
                    "processor\t: 1\nmodel name\t: Some  CPU @ 2GHz\nflags\t\t: fpu sse avx2 fma avx512f amx_tile\n")
    mc = machine_class(info)
    assert mc.cpu == "Some CPU @ 2GHz"
    assert mc.flags == ("avx2", "fma", "avx512f", "amx_tile")
    assert mc.key.endswith("|Some CPU @ 2GHz|avx2+fma+avx512f+amx_tile")


def test_store_keeps_classes_apart_and_borrows_the_closest(tmp_path):
    path = tmp_path / "b.json"
    BaselineStore(path, AVX512).record({"w": 2.0})
    BaselineStore(path, AVX2).record({"w": 3.0})
    assert BaselineStore(path, AVX512).lookup("w") == (2.0, AVX512.key, True)
    assert BaselineStore(path, AVX2).lookup("w") == (3.0, AVX2.key, True)
    other = MachineClass("x86_64", "Xeon C", ("avx2", "fma", "avx512f"))
    assert BaselineStore(path, other).lookup("w") == (2.0, AVX512.key, False)  # shares avx512f
    assert BaselineStore(path, ARM).lookup("w") is None                          # never across architectures
    assert BaselineStore(path, AVX512).lookup("nope") is None
    doc = json.loads(path.read_text())
    assert set(doc["machines"]) == {AVX512.key, AVX2.key} and doc["version"] == 2


def test_store_refuses_the_old_format(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"version": 1, "ratios": {"w": 2.0}}))
    with pytest.raises(ValueError, match="format version 1 is not 2"):
        BaselineStore(path, AVX512).lookup("w")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a perfguard baseline"):
        BaselineStore(path, AVX512).lookup("w")


class _Scripted(Guard):
    """The real decision logic over a scripted sequence of measured ratios (the timing is tested in tests/perf)."""

    def __init__(self, store, ratios, **kw):
        super().__init__(store, **kw)
        self._ratios = list(ratios)
        self.calls = 0

    def _measure(self, workload, reference):
        self.calls += 1
        r = self._ratios.pop(0)
        return Measurement(r, r, 1.0, r, 15, 1)


@pytest.mark.parametrize("ratios, ok, calls", [
    ([1.4], True, 1),              # within 1.5 x baseline 1.0
    ([2.0, 1.2], True, 2),         # a transient spike: the confirmation clears it
    ([2.0, 1.8, 1.3], True, 3),    # cleared by the second confirmation
    ([3.0, 2.9, 3.1], False, 3),   # a regression every measurement repeats
])
def test_guard_confirms_before_failing(tmp_path, ratios, ok, calls):
    store = BaselineStore(tmp_path / "b.json", AVX512)
    store.record({"w": 1.0})
    g = _Scripted(store, ratios, tolerance=1.5, confirm=2)
    v = g.check("w", lambda: None, lambda: None)
    assert (v.ok, g.calls) == (ok, calls)
    assert v.limit == pytest.approx(1.5)
    if not ok:
        assert "latency regression" in v.message and "3.00x the baseline" not in v.message
        assert "2.90x the baseline" in v.message


def test_guard_widens_tolerance_for_a_borrowed_baseline(tmp_path):
    BaselineStore(tmp_path / "b.json", AVX512).record({"w": 1.0})
    store = BaselineStore(tmp_path / "b.json", MachineClass("x86_64", "Xeon C", ("avx2", "fma", "avx512f")))
    v = _Scripted(store, [2.0], tolerance=1.5, foreign_tolerance=1.5).check("w", lambda: None, lambda: None)
    assert v.ok and not v.exact_class and v.limit == pytest.approx(2.25) and "closest to this machine" in v.message
    with pytest.raises(MissingBaseline, match="no baseline for 'x'"):
        _Scripted(store, [1.0]).check("x", lambda: None, lambda: None)


def test_guard_catches_an_injected_slowdown_of_real_work(tmp_path):
    x = np.random.default_rng(0).standard_normal((96, 96))
    g = Guard(BaselineStore(tmp_path / "b.json", AVX512))
    g.record("mm", lambda: x @ x @ x, lambda: x @ x)
    assert not g.check("mm", slowed(lambda: x @ x @ x, 3.0), lambda: x @ x).ok


def test_slowed_and_bad_parameters():
    with pytest.raises(ValueError, match="factor must be >= 1"):
        slowed(lambda: None, 0.5)
    with pytest.raises(ValueError, match="tolerance must be > 1"):
        Guard(BaselineStore("/nonexistent/b.json", AVX512), tolerance=0.9)


def _run(args, cwd, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


def _readme_examples() -> dict[str, str]:
    """The files the perf guard page shows, keyed by the name in the block's first comment line."""
    text = (ROOT / "docs" / "perf-guard.md").read_text()
    section = text[text.index("<!-- perf-example -->"):text.index("<!-- /perf-example -->")]
    return {m.group(1): m.group(0) for m in re.finditer(r"(?ms)^# (\S+\.py)\n.*?(?=^```)", section)}


def test_documented_perf_example_runs_as_shown(tmp_path):
    files = _readme_examples()
    assert {"conftest.py", "test_my_latency.py"} <= set(files)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    rec = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--perf-update"], tmp_path)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert json.loads((tmp_path / "perf_baseline.json").read_text())["machines"]
    chk = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], tmp_path)
    assert chk.returncode == 0, chk.stdout + chk.stderr


def test_cli_record_check_and_bad_input(tmp_path):
    (tmp_path / "mybench.py").write_text(
        "import numpy as np\nx = np.random.default_rng(0).standard_normal((96, 96))\n"
        "def work():\n    return x @ x @ x\ndef ref():\n    return x @ x\n")
    base = ["-m", "bench.cli", "perf"]
    args = ["--name", "mm", "--workload", "mybench:work", "--reference", "mybench:ref", "--baseline", "b.json"]
    missing = _run([*base, "check", *args], tmp_path)
    assert missing.returncode == 2 and "no baseline for 'mm'" in missing.stderr and "Traceback" not in missing.stderr
    assert _run([*base, "record", *args], tmp_path).returncode == 0
    ok = _run([*base, "check", *args], tmp_path)
    assert ok.returncode == 0 and "mm: ok" in ok.stdout
    bad = _run([*base, "check", "--name", "mm", "--workload", "mybench", "--reference", "mybench:ref", "--baseline", "b.json"], tmp_path)
    assert bad.returncode == 2 and "module:callable" in bad.stderr and "Traceback" not in bad.stderr
