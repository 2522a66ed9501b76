"""One model-card writer (bench.recipes.cards) behind every trainer's card: its layout, its refusals,
its atomic write, and (a freshness check) the committed lexical card regenerates byte for byte."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.recipes.cards import model_card_text, write_model_card

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_layout_comment_title_intro_and_sections():
    text = model_card_text("m", "\nIntro line.\n\n", [("Data (2 pairs)", "| a |\n\n"), ("Run", "- date: x\n")], comment="c v1")
    assert text == "<!-- c v1 -->\n# m\n\nIntro line.\n\n## Data (2 pairs)\n\n| a |\n\n## Run\n\n- date: x\n"
    assert model_card_text("m", "i", []) == "# m\n\ni\n"


@pytest.mark.parametrize("title, sections, msg", [("  ", [], "empty title"), ("m", [(" ", "b")], "empty heading")])
def test_refuses_empty_title_or_heading(tmp_path, title, sections, msg):
    with pytest.raises(ValueError, match=msg):
        write_model_card(tmp_path, title, "i", sections)
    assert not (tmp_path / "MODEL_CARD.md").exists()


def test_write_replaces_the_card_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "MODEL_CARD.md").write_text("old")
    path = write_model_card(tmp_path, "m", "new", [("S", "b")])
    assert path.read_text() == "# m\n\nnew\n\n## S\n\nb\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL_CARD.md"]


def test_every_trainer_card_goes_through_the_one_writer(monkeypatch, tmp_path):
    import bench.recipes.rerank as R
    import bench.recipes.specialists as S

    calls = []
    monkeypatch.setattr(R, "write_model_card", lambda folder, title, *a, **k: calls.append(title))
    monkeypatch.setattr(S, "write_model_card", lambda folder, title, *a, **k: calls.append(title))
    meta = {"layers": 2, "pairs": 2, "counts": {"s": {"pos": 1, "neg": 1}}, "lr": 1e-4, "batch_size": 8, "max_length": 64,
            "epochs": 1, "seed": 1, "date": "d", "hardware": "h"}
    R.write_reranker_card(tmp_path / "reranker-x", meta, "cmd")
    fmeta = {"metrics": {}, "pairs": {}, "recipe": {"heldout": 1, "augment": 0.1, "epochs": 1, "batch_size": 1, "lr": 1,
                                                    "max_length": 1, "seed": 1}, "n_pairs": 0, "command": "c", "date": "d",
             "format_version": 1}
    S.write_faithfulness_card(tmp_path, fmeta)
    assert calls == ["reranker-x", "faithfulness-minilm"]


def test_freshness_committed_lexical_card_regenerates_from_its_training_json(tmp_path):
    # Freshness check: the card in models/ is what the writer makes of the committed training.json + model.json.
    from bench.recipes.specialists import write_lexical_card
    from cascade.support_features import LexicalFaithfulnessScorer

    folder = MODELS / "faithfulness-lexical"
    scorer = LexicalFaithfulnessScorer.load(folder)
    scorer.meta = json.loads((folder / "training.json").read_text())
    write_lexical_card(tmp_path, scorer)
    assert (tmp_path / "MODEL_CARD.md").read_text() == (folder / "MODEL_CARD.md").read_text()
