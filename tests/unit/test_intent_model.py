"""IntentModel: OOS threshold, save/load round trip with a checked format, user data files."""
import hashlib
import json

import numpy as np
import pytest

from cascade.intent import IntentModel, evaluate_intent, fit_intent_model, load_text_labels


class _BagEmbedder:
    """Deterministic bag-of-words hashing embedder: fast and real enough to separate keyword intents."""

    name = "bag"
    fingerprint = "bag-v1"

    def encode_queries(self, texts):
        x = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                x[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    vocab = {"weather": ["rain", "sunny", "forecast"], "flight": ["plane", "airport", "ticket"], "bank": ["balance", "account", "deposit"]}
    filler = ["please", "now", "the", "my", "what", "is"]
    texts, labels = [], []
    for lab, words in vocab.items():
        for _ in range(60):
            texts.append(" ".join(rng.choice(words, 2).tolist() + rng.choice(filler, 2).tolist()))
            labels.append(lab)
    return texts, labels


def test_fit_predict_oos_and_round_trip(tmp_path):
    texts, labels = _data()
    texts_oos = ["zebra xylophone quantum", "purple monkey dishwasher"]
    m = fit_intent_model(texts + texts_oos, labels + ["oos", "oos"], embedder=_BagEmbedder(), target_recall=0.95)
    assert "oos" not in set(m.classifier.classes_)  # oos rows are not trained on
    assert 0 < m.oos_threshold < 1
    res = evaluate_intent(m, ["rain forecast please", "airport ticket now", "zebra xylophone quantum"], ["weather", "flight", "oos"])
    assert res["accuracy"] == 1.0 and res["n_oos"] == 1
    m.save(tmp_path / "m", meta={"metrics": res, "command": "test"})
    back = IntentModel.load(tmp_path / "m", embedder=_BagEmbedder())
    q = ["rain sunny", "balance deposit my", "plane"]
    np.testing.assert_array_equal(back.predict(q), m.predict(q))
    assert back.oos_threshold == m.oos_threshold
    assert "| accuracy | 1.0000 |" in (tmp_path / "m" / "MODEL_CARD.md").read_text()


def test_embedder_is_passed_in_and_checked(tmp_path):
    """No registry inside cascade: a name is refused, a model without embedder says how to attach one, a wrong one is refused."""
    texts, labels = _data()
    with pytest.raises(TypeError, match="registry.load_embedder"):
        fit_intent_model(texts, labels, embedder="minilm")
    fit_intent_model(texts, labels, embedder=_BagEmbedder()).save(tmp_path / "m")
    bare = IntentModel.load(tmp_path / "m")
    with pytest.raises(RuntimeError, match="registry.load_intent_model"):
        bare.predict(["rain"])

    class _Other(_BagEmbedder):
        fingerprint = "other-v1"

    with pytest.raises(ValueError, match="fingerprint other-v1"):
        IntentModel.load(tmp_path / "m", embedder=_Other())
    bare.embedder = _BagEmbedder()
    assert bare.predict(["rain forecast"])[0] == "weather"


def test_format_version_checked(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 99, this code reads format 2"):
        IntentModel.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="ragfix train intent"):
        IntentModel.load(tmp_path / "nothing")


def test_load_text_labels_csv_jsonl_and_errors(tmp_path):
    c = tmp_path / "a.csv"
    c.write_text('text,label\n"hello, there",greet\nbye,farewell\n')
    assert load_text_labels(c) == (["hello, there", "bye"], ["greet", "farewell"])
    j = tmp_path / "a.jsonl"
    j.write_text(json.dumps({"text": "hi", "label": "greet"}) + "\n\n")
    assert load_text_labels(j) == (["hi"], ["greet"])
    (tmp_path / "b.csv").write_text("utterance,intent\nhi,greet\n")
    with pytest.raises(ValueError, match="'text' and 'label' columns"):
        load_text_labels(tmp_path / "b.csv")
    (tmp_path / "c.jsonl").write_text('{"text": "", "label": "x"}\n')
    with pytest.raises(ValueError, match="c.jsonl:1: empty or non-text 'text'"):
        load_text_labels(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"text": 5, "label": "x"}\n')
    with pytest.raises(ValueError, match="non-text"):
        load_text_labels(tmp_path / "d.jsonl")
    (tmp_path / "e.jsonl").write_text("{broken\n")
    with pytest.raises(ValueError, match="e.jsonl:1: not valid JSON"):
        load_text_labels(tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match="unknown extension"):
        load_text_labels(_touch(tmp_path / "x.txt"))


def _touch(p):
    p.write_text("x")
    return p


# ----------------------------------------------------------------------------- issue 16

class _Boom:
    """Unpickling this writes a marker file: what a crafted model.joblib can do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_model_is_refused_without_being_opened(tmp_path):
    import joblib

    marker = tmp_path / "pwned"
    (tmp_path / "m").mkdir()
    joblib.dump({"format": 1, "classifier": _Boom(marker)}, tmp_path / "m" / "model.joblib")
    with pytest.raises(ValueError, match="pickle .* can run code"):
        IntentModel.load(tmp_path / "m")
    assert not marker.exists()


def test_saved_model_has_no_pickle_and_damage_is_detected(tmp_path, monkeypatch):
    import cascade.intent as I

    texts, labels = _data()
    m = fit_intent_model(texts, labels, embedder=_BagEmbedder())
    m.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["MODEL_CARD.md", "coef.npy", "intercept.npy",
                                                                  "meta.json", "model.json"]
    back = IntentModel.load(tmp_path / "m", embedder=_BagEmbedder())
    x = _BagEmbedder().encode_queries(texts[:20])
    np.testing.assert_allclose(back.classifier.predict_proba(x), m.classifier.predict_proba(x), atol=1e-12)
    np.save(tmp_path / "m" / "coef.npy", np.load(tmp_path / "m" / "coef.npy") * 2)
    with pytest.raises(ValueError, match="fingerprint .* damaged"):
        IntentModel.load(tmp_path / "m")


def test_committed_model_is_safe_format_and_keeps_its_fingerprint():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "models" / "intent-clinc150"
    assert not (folder / "model.joblib").exists()
    m = IntentModel.load(folder)
    assert m.classifier.fingerprint_ == json.loads((folder / "meta.json").read_text())["classifier_fingerprint"]
    assert len(m.classifier.classes_) == 150 and 0.5 < m.oos_threshold < 0.6


def test_no_oos_cutoff_without_an_oos_class(tmp_path, monkeypatch):
    import cascade.intent as I

    texts, labels = _data()
    plain = fit_intent_model(texts, labels, embedder=_BagEmbedder())
    assert plain.oos_threshold == 0.0
    plain.save(tmp_path / "plain")
    assert "no out-of-scope cutoff" in (tmp_path / "plain" / "MODEL_CARD.md").read_text()
    with_oos = fit_intent_model(texts + ["zebra xylophone"], labels + ["oos"], embedder=_BagEmbedder())
    assert with_oos.oos_threshold > 0.0
    assert fit_intent_model(texts, labels, embedder=_BagEmbedder(), target_recall=0.9).oos_threshold > 0.0


def test_text_and_label_columns_bom_and_bad_bytes(tmp_path):
    c = tmp_path / "a.csv"
    c.write_bytes(b"\xef\xbb\xbftext,intent\nhi,greet\nbye,farewell\n")
    assert load_text_labels(c, label_column="intent") == (["hi", "bye"], ["greet", "farewell"])
    j = tmp_path / "a.jsonl"
    j.write_text(json.dumps({"utterance": "hi", "category": "greet"}) + "\n")
    assert load_text_labels(j, "utterance", "category") == (["hi"], ["greet"])
    c.write_bytes(b"text,label\nhi,greet\ncaf\xe9,x\n")
    with pytest.raises(ValueError, match=r"a.csv:3: not UTF-8"):
        load_text_labels(c)
    c.write_text("text,label\nhi,greet\n" + "y" * 200_000 + ",x\n")
    with pytest.raises(ValueError, match=r"a.csv:3: malformed CSV"):
        load_text_labels(c)
