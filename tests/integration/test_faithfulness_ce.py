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
    emb = [k for k in after if k.endswith("embeddings.word_embeddings.weight")][0]
    top = [k for k in after if "encoder.layer.5.output.dense.weight" in k][0]
    low = [k for k in after if "encoder.layer.0.output.dense.weight" in k][0]
    src = {k.split("embeddings.")[-1] if "embeddings." in k else k.split("encoder.")[-1]: v for k, v in before.items()}
    assert torch.equal(after[emb], src["word_embeddings.weight"])
    assert torch.equal(after[low], src["layer.0.output.dense.weight"])
    assert not torch.equal(after[top], src["layer.5.output.dense.weight"])
    with pytest.raises(ValueError, match="freeze_layers must be in"):
        train_cross_encoder(pairs, tmp_path / "bad", layers=6, loss="bce", freeze_layers=6, progress=False)
