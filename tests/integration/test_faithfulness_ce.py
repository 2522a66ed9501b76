"""The cross-encoder faithfulness model (issue 22): the gate on hand-written hard cases, and the training knobs it needs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_freeze_layers_and_time_budget_stop_after_one_step_and_checkpoint(tmp_path):
    import torch
    from safetensors.torch import load_file

    from rerank.train import TrainPair, minilm_path, train_cross_encoder

    pairs = [TrainPair("Paris is the capital of France.", "The capital of France is Paris.", 1.0, "t", "a"),
             TrainPair("Paris is the capital of France.", "The capital of France is Lyon.", 0.0, "t", "a")] * 4
    final = train_cross_encoder(pairs, tmp_path / "run", layers=6, batch_size=4, max_length=32, loss="bce",
                                freeze_layers=5, time_budget_s=1e-6, progress=False, threads=1)
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["steps_done"] == 1 and progress["steps_planned"] == 2
    assert (tmp_path / "run" / "checkpoint" / "state.pt").is_file()  # a budget stop is resumable
    before = load_file(str(Path(minilm_path()) / "model.safetensors"))
    after = load_file(str(final / "model.safetensors"))

    def get(weights, suffix):
        (key,) = [k for k in weights if k.endswith(suffix)]
        return weights[key]

    for suffix in ("embeddings.word_embeddings.weight", "encoder.layer.0.output.dense.weight",
                   "encoder.layer.4.attention.self.query.weight"):
        assert torch.equal(get(after, suffix), get(before, suffix)), f"{suffix} moved although frozen"
    assert not torch.equal(get(after, "encoder.layer.5.output.dense.weight"), get(before, "encoder.layer.5.output.dense.weight"))
    with pytest.raises(ValueError, match="freeze_layers must be in"):
        train_cross_encoder(pairs, tmp_path / "bad", layers=6, loss="bce", freeze_layers=6, progress=False)
