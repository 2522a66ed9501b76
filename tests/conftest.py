"""Shared test set-up: offline always, and any non-loopback network connection fails the test."""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

pytest_plugins = ["perfguard.pytest_plugin"]

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkAccessError(RuntimeError):
    """Raised when a test tries to reach a non-loopback address: tests must run offline."""


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise NetworkAccessError(f"test tried to connect to {address!r}; tests must run offline")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded(_real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded(_real_connect_ex))
    yield


@pytest.fixture(scope="session")
def data_root() -> Path:
    from data import data_root as _root

    root = _root()
    if not (root / "scifact" / "corpus.jsonl").is_file():
        pytest.fail(f"shared data not found at {root}; set RAGFIX_DATA to the folder holding scifact/, clinc150/, ...")
    return root


@pytest.fixture(scope="session")
def scifact(data_root):
    from data import load_beir

    return load_beir(data_root / "scifact", "test")


_REPO = Path(__file__).resolve().parents[1]


def _code_key(sources: tuple[str, ...]) -> str:
    """16 hex of sha256 over the installed torch / transformers / sentence-transformers / onnxruntime
    versions, torch's thread count (it changes the summation order of a matmul, so the last bits of a
    logit) and the bytes of ``sources`` (paths relative to the repository root)."""
    import hashlib
    from importlib import metadata

    import torch

    h = hashlib.sha256()
    h.update(f"torch_threads={torch.get_num_threads()};".encode())
    for dist in ("torch", "transformers", "sentence-transformers", "onnxruntime", "numpy"):
        try:
            h.update(f"{dist}={metadata.version(dist)};".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none;".encode())
    for rel in sources:
        path = _REPO / rel
        if not path.is_file():
            raise FileNotFoundError(f"tests/conftest.py warm_cache: {rel} does not exist; fix the sources list of the caller")
        h.update(rel.encode() + b"\x00" + path.read_bytes() + b"\x01")
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory):
    """``warm_cache(name, *sources) -> Path``: a folder that survives between test runs, for model outputs a
    test needs but does not test (a teacher's scores, the evaluation side of an equality check).

    Lives under ``$RAGFIX_CACHE/tests/`` next to the embedding cache, so ``make test`` pays for those
    outputs once per machine instead of once per run. The folder's name carries a hash of the library
    versions, torch's thread count and every file in ``sources``: changing the code that produced the
    cached outputs (or upgrading torch, or another thread count) gives a new, empty folder, never a stale hit. The caches themselves key each entry
    on the model's weights and the exact texts (``PairScoreCache``, ``EmbeddingCache``).
    ``RAGFIX_TEST_COLD=1`` gives a fresh temporary folder instead: the cold path, every output computed.
    """
    from retrieval.cache import default_cache_dir

    def make(name: str, *sources: str) -> Path:
        if os.environ.get("RAGFIX_TEST_COLD") == "1":
            return tmp_path_factory.mktemp(f"cold-{name}")
        folder = default_cache_dir() / "tests" / f"{name}-{_code_key(tuple(sources))}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    return make
