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
