"""The test-side ``warm_cache`` never serves outputs of code that has since changed.

Its folder name hashes the sources that produced the cached outputs (and the library versions and
torch's thread count): an edit to one of them must give another folder, a missing source must be
refused, and ``RAGFIX_TEST_COLD=1`` must give a fresh empty folder.
"""
from __future__ import annotations

import pytest
import torch

import tests.conftest as conftest


def test_an_edited_source_gives_another_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "_REPO", tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    key = conftest._code_key(("a.py", "b.py"))
    assert conftest._code_key(("a.py", "b.py")) == key  # stable
    (tmp_path / "b.py").write_text("y = 3\n")
    assert conftest._code_key(("a.py", "b.py")) != key  # an edit invalidates
    assert conftest._code_key(("a.py",)) != conftest._code_key(("b.py",))


def test_the_thread_count_is_part_of_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "_REPO", tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = conftest._code_key(("a.py",))
        torch.set_num_threads(2)
        assert conftest._code_key(("a.py",)) != one
    finally:
        torch.set_num_threads(before)


def test_a_missing_source_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "_REPO", tmp_path)
    with pytest.raises(FileNotFoundError, match="no-such.py does not exist"):
        conftest._code_key(("no-such.py",))


def test_cold_runs_get_an_empty_folder(warm_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("RAGFIX_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGFIX_TEST_COLD", "1")
    folder = warm_cache("probe", "tests/conftest.py")
    assert folder.is_dir() and not any(folder.iterdir())
    monkeypatch.delenv("RAGFIX_TEST_COLD")
    warm = warm_cache("probe", "tests/conftest.py")
    assert warm != folder and warm.parent == tmp_path / "tests"
