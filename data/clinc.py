"""CLINC150 (OOS-eval, "full") loader and a text-level embedding store shared by the III/X benchmarks.

CLINC150 (Larson et al., EMNLP 2019): 150 intents in 10 domains, 100 train / 20 val / 30 test
utterances per intent, plus out-of-scope ("oos") utterances in oos_train/oos_val/oos_test. The
loader returns plain ``(texts, intents)`` lists per split and the intent -> domain map, raising
:class:`~data.DatasetError` with the file and what is wrong instead of a ``KeyError``.

:class:`TextEmbeddingStore` caches one vector per (embedder fingerprint, text) in SQLite (WAL), so a
``--limit`` subset re-uses vectors computed for a larger run and vice versa (the corpus-level
:class:`retrieval.cache.EmbeddingCache` keys on the whole ordered list, which a subset never hits).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from data import DatasetError, data_root

__all__ = ["ClincData", "load_clinc150", "TextEmbeddingStore", "StoreCachedEmbedder", "OOS_LABEL", "SPLITS"]

OOS_LABEL = "oos"
SPLITS = ("train", "val", "test", "oos_train", "oos_val", "oos_test")


@dataclass
class ClincData:
    """Per split ``(texts, intents)``; ``domains`` maps intent -> domain (oos has none)."""

    splits: dict[str, tuple[list[str], list[str]]]
    domains: dict[str, str]

    def split(self, name: str) -> tuple[list[str], list[str]]:
        if name not in self.splits:
            raise KeyError(f"CLINC150 split {name!r} not loaded; available: {', '.join(self.splits)}")
        return self.splits[name]

    @property
    def intents(self) -> list[str]:
        """The 150 in-scope intents, sorted."""
        return sorted(self.domains)


def _per_label_limit(texts: list[str], labels: list[str], n: int | None) -> tuple[list[str], list[str]]:
    if n is None:
        return texts, labels
    seen: dict[str, int] = {}
    out_t, out_l = [], []
    for t, lab in zip(texts, labels):
        if seen.get(lab, 0) < n:
            seen[lab] = seen.get(lab, 0) + 1
            out_t.append(t)
            out_l.append(lab)
    return out_t, out_l


def load_clinc150(folder: Path | str | None = None, per_intent: int | None = None) -> ClincData:
    """Load ``data_full.json`` (+ ``domains.json`` when present) from ``folder`` (default ``data_root()/clinc150``).

    Args:
        folder: directory holding ``data_full.json``.
        per_intent: keep at most this many utterances per label in every split (file order), for
            quick runs; ``None`` keeps everything.
    """
    folder = Path(folder) if folder is not None else data_root() / "clinc150"
    path = folder / "data_full.json"
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; set RAGFIX_DATA to the folder holding clinc150/data_full.json")
    if per_intent is not None and per_intent <= 0:
        raise ValueError(f"per_intent must be a positive number or None, got {per_intent}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object with splits {', '.join(SPLITS)}")
    splits: dict[str, tuple[list[str], list[str]]] = {}
    for name in SPLITS:
        if name not in raw:
            raise DatasetError(f"{path}: missing split {name!r}; expected {', '.join(SPLITS)}")
        texts, labels = [], []
        for i, row in enumerate(raw[name]):
            if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, str) for v in row)):
                raise DatasetError(f"{path}: split {name!r} row {i}: expected [text, intent], got {row!r:.80}")
            texts.append(row[0])
            labels.append(row[1])
        splits[name] = _per_label_limit(texts, labels, per_intent)
    domains: dict[str, str] = {}
    dpath = folder / "domains.json"
    if dpath.is_file():
        for dom, intents in json.loads(dpath.read_text(encoding="utf-8")).items():
            for intent in intents:
                domains[intent] = dom
    else:
        domains = {lab: "unknown" for lab in set(splits["train"][1])}
    return ClincData(splits, domains)


class TextEmbeddingStore:
    """One float32 vector per (fingerprint, kind, text), in SQLite with WAL.

    ``encode(fingerprint, texts, fn, kind="query")`` returns the ``(n, dim)`` matrix, calling
    ``fn`` only on texts not stored yet. Safe to share between processes (WAL, one transaction per
    batch of inserts); a killed run keeps everything committed before it died.
    """

    def __init__(self, path: Path | str | None = None) -> None:
        if path is None:
            from retrieval.cache import default_cache_dir

            path = default_cache_dir() / "text_embeddings.sqlite"
        from monitor.sqlite_store import connect, write_transaction

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The project's one way to open an SQLite store (WAL, busy timeout, explicit durability); NORMAL:
        # a row lost to a power cut costs one re-encoding, nothing more.
        self._db = connect(self.path, synchronous="NORMAL")
        self._write_transaction = write_transaction
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS emb (fp TEXT, kind TEXT, h TEXT, dim INTEGER, v BLOB, PRIMARY KEY (fp, kind, h))"
            )

    def _transaction(self):
        return self._write_transaction(self._db, self.path)

    @staticmethod
    def _hash(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def encode(
        self,
        fingerprint: str,
        texts: Sequence[str],
        fn: Callable[[Sequence[str]], np.ndarray],
        kind: str = "query",
        chunk: int = 256,
    ) -> np.ndarray:
        hashes = [self._hash(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(hashes))
        for i in range(0, len(uniq), 500):
            part = uniq[i : i + 500]
            q = f"SELECT h, dim, v FROM emb WHERE fp=? AND kind=? AND h IN ({','.join('?' * len(part))})"
            for h, dim, v in self._db.execute(q, (fingerprint, kind, *part)):
                found[h] = np.frombuffer(v, dtype=np.float32, count=dim)
        todo = [(h, t) for h, t in dict(zip(hashes, texts)).items() if h not in found]
        # Encode and commit in chunks, so an interrupted run keeps its progress.
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            vecs = np.ascontiguousarray(fn([t for _, t in part]), dtype=np.float32)
            if vecs.shape[0] != len(part):
                raise ValueError(f"encoder returned {vecs.shape[0]} rows for {len(part)} texts")
            with self._transaction():
                self._db.executemany(
                    "INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?, ?)",
                    [(fingerprint, kind, h, vecs.shape[1], vecs[j].tobytes()) for j, (h, _) in enumerate(part)],
                )
            for j, (h, _) in enumerate(part):
                found[h] = vecs[j]
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)

    def close(self) -> None:
        self._db.close()


class StoreCachedEmbedder:
    """An embedder whose ``encode_queries`` goes through a :class:`TextEmbeddingStore` (same ``name``, ``fingerprint``).

    What ``cascade.intent.fit_intent_model`` is given by ``ragfix train intent``, so a second run over
    CLINC150 embeds nothing twice; the fix package itself takes any embedder and caches nothing.
    ``path``: the store's SQLite file (default under ``$RAGFIX_CACHE``); opened and closed per call.
    """

    def __init__(self, embedder, path: Path | str | None = None) -> None:
        self.embedder, self.path = embedder, path
        self.name = getattr(embedder, "name", type(embedder).__name__)
        self.fingerprint = embedder.fingerprint

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        store = TextEmbeddingStore(self.path)
        try:
            return store.encode(self.fingerprint, list(texts), self.embedder.encode_queries, "query")
        finally:
            store.close()
