"""``ragfix cache info`` / ``ragfix cache clear``: every cache ragfix writes, listed and removable.

The caches hold derived data of the user's own text (embeddings of corpora and queries, scored
prompts), so their locations are documented here, in one table, and one command removes them.

| entry under ``$RAGFIX_CACHE`` (default ``~/.cache/ragfix``) | what | written by |
|---|---|---|
| ``embeddings/`` | corpus embedding matrices (``.npy``), keyed by model fingerprint + corpus hash | dense retrieval, every bench |
| ``text_embeddings.sqlite`` | query/utterance embeddings keyed by model fingerprint + text | ``train intent``, CLINC150 benches |
| ``context_rot.sqlite`` | finished position-curve prompts (resume) | ``diagnose context-rot``, ``bench context`` |
| ``onnx/`` | ONNX exports (fp32 / int8) of cross-encoders | ``onnx``/``onnx-int8`` backends |
| ``models/`` | GGUF models de-quantised to safetensors | ``smollm2`` and other GGUF LLMs |

Outside it, under the folder a command runs in: ``runs/eval-cache/`` (``train eval-reranker
--cache-dir``: cross-encoder scores keyed by model, settings and query/document text hashes) and the
training work folders (``--work``). ``clear`` removes the ``$RAGFIX_CACHE`` entries above, and the
eval cache folder when ``--eval-cache DIR`` is given; it never removes anything it does not list.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

__all__ = ["CACHE_ENTRIES", "cache_entries", "clear_caches", "add_parser"]

CACHE_ENTRIES = ("embeddings", "text_embeddings.sqlite", "context_rot.sqlite", "onnx", "models")


def cache_entries(root: Path | None = None) -> list[Path]:
    """The cache paths under ``root`` (default ``$RAGFIX_CACHE``), whether or not they exist yet."""
    from retrieval.cache import default_cache_dir

    root = Path(root) if root is not None else default_cache_dir()
    out = []
    for name in CACHE_ENTRIES:
        p = root / name
        out.append(p)
        if name.endswith(".sqlite"):
            out += [root / f"{name}-wal", root / f"{name}-shm", root / f"{name}-journal"]
    return out


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else 0


def clear_caches(root: Path | None = None, extra: list[Path] | None = None) -> list[tuple[Path, int]]:
    """Remove every listed cache entry that exists; returns ``(path, bytes freed)`` per removed entry."""
    removed = []
    for p in cache_entries(root) + list(extra or []):
        if not p.exists():
            continue
        n = _size(p)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append((p, n))
    return removed


def _info(args: argparse.Namespace) -> int:
    from retrieval.cache import default_cache_dir

    print(f"cache root: {default_cache_dir()} ($RAGFIX_CACHE, default ~/.cache/ragfix)")
    for p in cache_entries() + ([Path(args.eval_cache)] if args.eval_cache else []):
        print(f"  {p}  {'%.1f MB' % (_size(p) / 1e6) if p.exists() else '(absent)'}")
    return 0


def _clear(args: argparse.Namespace) -> int:
    removed = clear_caches(extra=[Path(args.eval_cache)] if args.eval_cache else None)
    for p, n in removed:
        print(f"removed {p} ({n / 1e6:.1f} MB)")
    print(f"{len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'} removed")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cache", help="list or clear ragfix's caches ($RAGFIX_CACHE, default ~/.cache/ragfix)")
    cs = c.add_subparsers(dest="cache", required=True)
    for name, fn, text in (("info", _info, "show every cache location and its size"),
                           ("clear", _clear, "remove every cache entry ragfix writes under $RAGFIX_CACHE")):
        p = cs.add_parser(name, help=text)
        p.add_argument("--eval-cache", default=None, help="also this eval-reranker score cache folder (e.g. runs/eval-cache)")
        p.set_defaults(func=fn)
