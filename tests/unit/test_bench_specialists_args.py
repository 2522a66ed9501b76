"""Argument checks of ``ragfix bench specialists`` that must fail before any file is written."""
import pytest

import rerank.backends as B
from bench.benchmarks.bench_specialists import run_specialists_bench
from rerank.backends import resolve_backend


def test_auto_backend_follows_the_cpu():
    assert resolve_backend("auto") == ("fp32" if B.bf16_refusal() else "bf16")
    assert resolve_backend("onnx-int8") == "onnx-int8"


def test_unknown_backend_is_refused_before_the_ledger_is_written(tmp_path):
    out = tmp_path / "res" / "s.json"
    with pytest.raises(ValueError, match="relevance backend must be auto or one of fp32, bf16"):
        run_specialists_bench(out, judge_limit=0, relevance_backend="fp8")
    assert not (tmp_path / "res").exists()


def test_bf16_on_a_cpu_that_emulates_it_is_refused(monkeypatch):
    monkeypatch.setattr(B, "bf16_refusal", lambda: "no native bf16 on this CPU")
    with pytest.raises(ValueError, match="no native bf16 on this CPU; use auto, fp32 or onnx-int8"):
        resolve_backend("bf16")
    assert resolve_backend("auto") == "fp32"
