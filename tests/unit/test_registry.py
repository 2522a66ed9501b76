import pytest

from registry import Registry, UnknownModelError, load_embedder


def test_known_names_include_the_packaged_models():
    reg = Registry()
    assert {"minilm", "e5-small"} <= set(reg.names("embedder"))
    assert "smollm2" in reg.names("llm")


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownModelError, match=r"unknown embedder 'not-a-model'; known embedder names: .*minilm"):
        Registry().resolve("not-a-model", "embedder")


def test_wrong_kind_is_explained():
    with pytest.raises(UnknownModelError, match="'smollm2' is a llm, not a embedder"):
        Registry().resolve("smollm2", "embedder")


def test_hub_id_refused_offline_with_advice():
    with pytest.raises(UnknownModelError, match="HF_HUB_OFFLINE=1"):
        Registry().resolve("bge-small", "embedder")
    with pytest.raises(UnknownModelError, match="HF_HUB_OFFLINE=1"):
        Registry().resolve("someorg/some-model", "cross-encoder")


def test_packaged_weights_resolve_offline():
    spec = Registry().resolve("smollm2", "llm")
    assert spec.path.name.endswith(".gguf") and spec.path.is_file()
    assert Registry().resolve("minilm", "embedder").path.joinpath("config.json").is_file()


def test_bad_registry_entry(tmp_path):
    cfg = tmp_path / "models.yaml"
    cfg.write_text("models:\n  x: {kind: reranker, source: pypi, loader: y}\n")
    with pytest.raises(ValueError, match="kind 'reranker'; allowed: embedder, cross-encoder, llm"):
        Registry(cfg)


def test_embedders_agree_on_shape_and_norm():
    import numpy as np

    for name in ("minilm", "e5-small"):
        e = load_embedder(name)
        x = e.encode_documents(["The cat sat on the mat.", "Protein folding in cells."])
        assert x.shape == (2, 384) and x.dtype == np.float32
        assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
        q = e.encode_queries(["where did the cat sit"])
        assert (x @ q[0]).argmax() == 0  # the right passage wins, for both models
        assert len(e.fingerprint) == 16
