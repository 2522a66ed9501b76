"""Every results file records where its numbers came from: commit, dirty flag, command, CPU flags, model hashes."""
from __future__ import annotations

import hashlib
import json

from bench.report import write_results
from registry import Registry, weights_sha256


def test_results_carry_commit_machine_and_model_hashes(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights-v1")
    Registry().resolve(str(model), "cross-encoder")  # what every registry loader does first
    doc = write_results(tmp_path / "r.json", {"k": 1}, {"ndcg@10": 0.5})
    env = json.loads((tmp_path / "r.json").read_text())["environment"]
    assert env == doc["environment"]
    assert len(env["commit"]) == 40 and isinstance(env["dirty"], bool)
    assert env["command"] and isinstance(env["cpu_flags"], list)
    row = env["models"]["my-model"]
    assert row["source"] == "local" and row["sha256"] == weights_sha256(model)


def test_weights_hash_changes_with_the_weights(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"a")
    first = weights_sha256(f)
    assert first == hashlib.sha256(b"m.gguf" + b"1" + b"a").hexdigest()[:16]
    f.write_bytes(b"b")
    assert weights_sha256(f) != first
