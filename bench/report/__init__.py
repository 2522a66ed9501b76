"""Writing benchmark results: JSON (config, environment, metrics) and a short Markdown table."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from bench.report.environment import environment

__all__ = ["write_results", "markdown_table", "user_file_mode", "atomic_write_text", "check_output_path",
           "check_output_folder", "check_work_manifest"]


def user_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open(path, "w")`` would give a new file.

    ``tempfile.mkstemp`` creates its file 0600 whatever the umask, so a result written through it
    and renamed into place would be unreadable to the user's group; callers ``fchmod`` to this.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    lines = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(format(v, floatfmt) if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def check_output_path(out: Path | str, make_parent: bool = False) -> Path:
    """Check, before any work, that ``out`` can be written: its folder exists (or is created when
    ``make_parent``) and is writable, and ``out`` is not a folder. Raises ``ValueError`` naming the path."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; give a file path for the output")
    if not parent.is_dir():
        if make_parent:
            parent.mkdir(parents=True, exist_ok=True)
        else:
            raise ValueError(f"{out}: folder {parent} does not exist; create it or choose another --out")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{out}: folder {parent} is not writable; choose another --out")
    return out


def check_output_folder(out: Path | str, force: bool = False, flag: str = "--out") -> Path:
    """Refuse, before any work, to write a model into an existing non-empty folder unless ``force``
    (a trained model folder such as the shipped ``models/intent-clinc150`` is not overwritten by a
    command run from the repository root); the parent must be writable. Raises ``ValueError``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ValueError(f"{flag} {out}: folder exists and is not empty; pass --force to overwrite it, "
                         "or choose a new folder")
    parent = out.parent if str(out.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {out}: {parent} is not writable; choose another folder")
    return out


def _path_fingerprint(path: Path) -> list:
    """(relative name, size, mtime) of a data file or of every file in a data folder: cheap, and any
    edit, swap or regeneration of the data changes it."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.exists() else []
    return [[str(f.relative_to(path) if path.is_dir() else f.name), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def check_work_manifest(work: Path | str, settings: Mapping, data_paths: Sequence[Path | str] = ()) -> Path:
    """Resume only the run a work folder was started for.

    The first run writes ``<work>/manifest.json`` (the settings that shape the training pairs and the
    schedule, and the size/mtime of every data file); a rerun with other settings or changed data
    raises ``ValueError`` listing what differs, instead of silently resuming on the old pairs. A work
    folder with frozen pairs but no manifest (made before manifests) is refused too: it cannot be checked.
    """
    work = Path(work)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}
    data = {str(Path(p).resolve()): _path_fingerprint(Path(p)) for p in data_paths if p}
    path = work / "manifest.json"
    want = {"format": 1, "settings": settings, "data": data}
    if path.is_file():
        have = json.loads(path.read_text(encoding="utf-8"))
        diff = [k for k in sorted(set(have.get("settings", {})) | set(settings))
                if have.get("settings", {}).get(k) != settings.get(k)]
        msgs = [f"{k}: {have.get('settings', {}).get(k)!r} then, {settings.get(k)!r} now" for k in diff]
        if have.get("data") != data:
            msgs.append(f"data: {sorted(have.get('data', {}))} then (with their sizes/dates), {sorted(data)} now")
        if msgs:
            raise ValueError(f"{work}: this work folder belongs to another run ({'; '.join(msgs)}); rerun with the "
                             "same settings and data to resume, or give a new --work")
        return path
    if (work / "pairs.jsonl").exists() or (work / "checkpoint").exists():
        raise ValueError(f"{work}: holds a run without manifest.json, so resuming it cannot be checked against "
                         "this command's data and settings; give a new --work (or delete this folder)")
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(want, indent=1) + "\n")
    return path


def atomic_write_text(out: Path | str, text: str) -> Path:
    """Write ``text`` to ``out`` through a temporary file renamed into place (the user's umask applies)."""
    out = Path(out)
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=f".{out.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, user_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def write_results(out: Path | str, config: Mapping, metrics: Mapping, markdown: str | None = None,
                  models: Mapping | None = None, **extra) -> dict:
    """Write ``{"config", "environment", "metrics", ...extra}`` atomically; Markdown beside it as ``.md``.

    ``models``: for numbers derived from another run's outputs (a score dump) without loading a model here,
    the model record of the run that produced them, so the file still names the weights behind its numbers.
    """
    out = Path(out)
    env = environment()
    if models is not None:
        env["models"] = dict(models)
    doc = {"config": dict(config), "environment": env, "metrics": dict(metrics), **extra}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    if markdown is not None:
        atomic_write_text(out.with_suffix(".md"), markdown)
    return doc
