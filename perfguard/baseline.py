"""Baselines per machine class: the committed ratios a guard compares with.

A ratio to a matched reference transfers between machines far better than milliseconds do, but not
perfectly: a kernel that uses AVX-512 or AMX on one CPU and AVX2 on another changes its cost relative
to the reference. So baselines are stored per *machine class* (architecture, CPU model name and the
SIMD flags that select kernels), each with the date and library versions it was recorded with. A
machine with no recorded class borrows the closest recorded one (most shared flags) and the guard
widens its tolerance for it, saying so.

File format (JSON, ``version`` 2)::

    {"version": 2, "machines": {"<class key>": {"arch": ..., "cpu": ..., "flags": [...],
                                                 "recorded": "...", "ratios": {"name": 1.23}}}}
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

__all__ = ["BaselineStore", "MachineClass", "machine_class", "KERNEL_FLAGS"]

FORMAT_VERSION = 2
# SIMD features that make numpy/torch/onnxruntime pick different kernels.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "asimd", "sve")


class MachineClass(NamedTuple):
    """What a baseline is valid for."""

    arch: str
    cpu: str
    flags: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.arch}|{self.cpu}|{'+'.join(self.flags) or '-'}"


def machine_class(cpuinfo: str | Path = "/proc/cpuinfo") -> MachineClass:
    """This machine's class, from ``/proc/cpuinfo`` where it exists (else ``platform``)."""
    cpu, flags = platform.processor() or "unknown", set()
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and cpu in ("unknown", "", platform.processor()):
                cpu = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    return MachineClass(platform.machine() or "unknown", " ".join(cpu.split()) or "unknown",
                        tuple(f for f in KERNEL_FLAGS if f in flags))


class BaselineStore:
    """Ratios per machine class in one JSON file (read on demand, written atomically)."""

    def __init__(self, path: str | Path, machine: MachineClass | None = None) -> None:
        self.path = Path(path)
        self.machine = machine or machine_class()

    def _load(self) -> dict:
        if not self.path.is_file():
            return {"version": FORMAT_VERSION, "machines": {}}
        try:
            doc = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path}: not a perfguard baseline file ({exc}); delete it and record again") from exc
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION or not isinstance(doc.get("machines"), dict):
            raise ValueError(f"{self.path}: baseline format version {doc.get('version') if isinstance(doc, dict) else '?'}"
                             f" is not {FORMAT_VERSION}; record the baselines again")
        return doc

    def classes(self) -> dict[str, dict]:
        """Recorded machine classes, by key."""
        return self._load()["machines"]

    def lookup(self, name: str) -> tuple[float, str, bool] | None:
        """``(ratio, class key, exact)`` for workload ``name``: this machine's class, else the closest
        recorded class (same architecture, most shared kernel flags) holding ``name``; None if none."""
        machines = self.classes()
        mine = machines.get(self.machine.key)
        if mine and name in mine.get("ratios", {}):
            return float(mine["ratios"][name]), self.machine.key, True
        best, best_score = None, -1.0
        for key, entry in machines.items():
            if name not in entry.get("ratios", {}) or entry.get("arch") != self.machine.arch:
                continue
            shared = len(set(entry.get("flags", ())) & set(self.machine.flags))
            differ = len(set(entry.get("flags", ())) ^ set(self.machine.flags))
            score = shared - 0.5 * differ
            if score > best_score:
                best, best_score = key, score
        if best is None:
            return None
        return float(machines[best]["ratios"][name]), best, False

    def record(self, ratios: dict[str, float]) -> None:
        """Store ``ratios`` under this machine's class (other classes untouched), atomically."""
        doc = self._load()
        entry = doc["machines"].setdefault(self.machine.key, {"arch": self.machine.arch, "cpu": self.machine.cpu,
                                                               "flags": list(self.machine.flags), "ratios": {}})
        entry["ratios"].update({k: round(float(v), 4) for k, v in ratios.items()})
        entry["recorded"] = time.strftime("%Y-%m-%d", time.gmtime())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=2, sort_keys=True)
                fh.write("\n")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
