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


def _fake_run(tmp_path, name, init, tasks, recipe_extra=None):
    """A model folder shaped like a trainer's ``final/``: real weights (the project reranker), a training.json."""
    import shutil

    final = tmp_path / name / "final"
    shutil.copytree(ROOT / "models" / "reranker-minilm-l6", final)
    recipe = {"tasks": list(tasks), "stage_tasks": list(tasks), "nq_rows": 10, "nq_heldout": 500, "nq_seed": 1000,
              "nq_mode": "claims", "scifact_pairs": 0, "replay": None, "replay_n": 0, "qa_rows": None, "hard_cap": 0.75,
              "rows_per_task": 10, "hard_share": 0.5, "init": str(init) if init else None, "max_length": 64,
              "batch_size": 4, "lr": 3e-5, "loss": "bce", "bf16": False, "split_seed": 7, "heldout": 3000,
              "heldout_per_task": {"qa": 3000}, **(recipe_extra or {})}
    meta = {"format_version": 1, "kind": "faithfulness-cross-encoder", "recipe": recipe,
            "pairs": {"nq-answer": {"pos": 5, "neg": 0}}, "n_pairs": 5, "progress": {"steps_done": 1},
            "command": f"python -m bench.cli.train_faithfulness_ce --out {name}"}
    if tasks:
        meta["calibration"] = {"threshold": 0.42, "target": {"value": 0.9}, "n": 10, "fallback": None}
    (final / "training.json").write_text(json.dumps(meta))
    return final


def test_publish_writes_fp16_weights_the_init_chain_and_a_card(tmp_path):
    from bench.cli.train_faithfulness_ce import main
    from cascade.faithfulness import FaithfulnessScorer

    a = _fake_run(tmp_path, "stage1", None, ())
    b = _fake_run(tmp_path, "stage2", a, ("qa", "dialogue"))
    dst = tmp_path / "models" / "faithfulness-x"
    assert main(["publish", "--from", str(b), "--out", str(dst)]) == 0
    card = (dst / "MODEL_CARD.md").read_text()
    assert "# faithfulness-minilm-ce" in card and "Stage 1 data" in card and "Stage 2 data" in card and "0.4200" in card
    assert (dst / "stage1.json").is_file() and not (dst / "stage2.json").exists()
    assert FaithfulnessScorer(str(dst)).threshold == 0.42  # the calibrated threshold travels with the model
    assert not dst.with_name(dst.name + ".tmp").exists()
    with pytest.raises(SystemExit) as exc:
        main(["publish", "--from", str(tmp_path / "nothing"), "--out", str(dst)])
    assert exc.value.code == 2


def test_committed_cross_encoder_beats_the_lexical_gate_on_the_hard_cases():
    """Side by side on the 58 committed hard cases (results/faithfulness_ce.json: 0.638 vs 0.534): the
    cross-encoder reads paraphrases the lexical model flags, through the registry's int8 path."""
    from bench.benchmarks.faithfulness_ce import hard_case_metrics, load_hard_cases
    from generate.gate import FaithfulnessGate
    from registry import load_faithfulness

    cases = load_hard_cases()
    scorer = load_faithfulness("faithfulness-ce")
    assert scorer.backend == "int8" and abs(scorer.threshold - 0.4365) < 1e-3  # calibrated at training time
    ce = hard_case_metrics(FaithfulnessGate(scorer), cases)
    lex = hard_case_metrics(FaithfulnessGate(load_faithfulness("faithfulness")), cases)
    assert ce["accuracy"] >= 0.60 and ce["accuracy"] >= lex["accuracy"] + 0.05
    assert ce["by_kind"]["paraphrase"]["accuracy"] >= 0.8 > lex["by_kind"]["paraphrase"]["accuracy"]
