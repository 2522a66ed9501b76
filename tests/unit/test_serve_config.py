"""serve.config: defaults are the safe ones, bad settings are refused with the key and the fix."""
from __future__ import annotations

import pytest

from serve.config import ServeConfigError, load_config


def test_defaults_bind_loopback_and_bound_the_queue():
    c = load_config()
    assert c.host == "127.0.0.1" and c.max_queue > 0 and c.deadline_ms > 0 and c.bearer_token() is None


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("port: 9000\nmax_queue: 8\nmicrobatch: false\n")
    c = load_config(p, {"port": 0, "max_queue": None})
    assert (c.port, c.max_queue, c.microbatch) == (0, 8, False)


def _assert_refused(tmp_path, text: str, words: list[str]) -> None:
    """Loading a config with ``text`` raises ServeConfigError naming every one of ``words``."""
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ServeConfigError) as err:
        load_config(p)
    for w in words:
        assert w in str(err.value)
    assert str(p) in str(err.value) or "unknown" in str(err.value)  # the file, or the unknown key, is named


@pytest.mark.parametrize("text, words", [
    ("prot: 1\n", ["unknown setting 'prot'", "allowed"]),
    ("max_queue: -1\n", ["max_queue=-1", ">= 0"]),
    ("port: 70000\n", ["port=70000"]),
    ("deadline_ms: soon\n", ["deadline_ms='soon'"]),
    ("- a\n- b\n", ["must be a mapping"]),
    ("backend: fp16\n", ["backend='fp16'", "fp32"]),
    ("host: 0.0.0.0\n", ["not a loopback address", "allow_public_bind"]),
    ("host: 0.0.0.0\nallow_public_bind: true\n", ["no token is set"]),
])
def test_bad_settings_name_the_key(tmp_path, text, words):
    _assert_refused(tmp_path, text, words)


def test_token_env_must_be_set(monkeypatch):
    monkeypatch.delenv("RAGFIX_TEST_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ServeConfigError, match="RAGFIX_TEST_NO_SUCH_TOKEN"):
        load_config(overrides={"token_env": "RAGFIX_TEST_NO_SUCH_TOKEN"}).bearer_token()
    monkeypatch.setenv("RAGFIX_TEST_NO_SUCH_TOKEN", "s3cret")
    c = load_config(overrides={"token_env": "RAGFIX_TEST_NO_SUCH_TOKEN"})
    assert c.bearer_token() == "s3cret" and "s3cret" not in str(c.public())


def test_public_bind_with_token_is_allowed():
    c = load_config(overrides={"host": "0.0.0.0", "allow_public_bind": True, "token": "t"})
    assert c.host == "0.0.0.0" and c.public()["token"] == "***"


def test_admission_bound_and_wait_estimate():
    from serve.app import ServeState

    st = ServeState()
    st.sec_per_request = 0.1
    assert [st.admit(2), st.admit(2), st.admit(2)] == [0, 1, None]  # the third is refused (429)
    assert not st.idle.is_set() and abs(st.wait_estimate_s(1) - 0.2) < 1e-9
    st.release(0.4, ahead=1)  # answered after 0.4 s with one ahead: 0.2 s per slot
    assert abs(st.sec_per_request - (0.8 * 0.1 + 0.2 * 0.2)) < 1e-9
    st.release(None)  # refused or timed out: no update
    assert st.inflight == 0 and st.idle.is_set()
    assert st.admit(0) == 0  # 0 = unbounded



@pytest.mark.parametrize("text, words", [
    ("answer_retriever: sparse\n", ["answer_retriever='sparse'", "hybrid, bm25, dense"]),
    ("answer_context_k: 5\nanswer_retrieve_k: 3\n", ["answer_context_k=5", "<= answer_retrieve_k"]),
    ("answer_llm_url: 127.0.0.1:8000\n", ["answer_llm_url", "http://"]),
    ("answer_corpus_limit: 0\n", ["answer_corpus_limit=0", ">= 1"]),
    ("answer_max_tokens: 0\n", ["answer_max_tokens=0", ">= 1"]),
])
def test_answer_settings_refused_with_the_key(tmp_path, text, words):
    _assert_refused(tmp_path, text, words)


def test_shipped_config_enables_answer_with_the_registry_llm():
    from pathlib import Path

    c = load_config(Path(__file__).resolve().parents[2] / "configs" / "serve.yaml")
    assert c.answer and c.answer_llm == "smollm2" and c.answer_retriever == "hybrid" and c.answer_llm_url is None


@pytest.mark.parametrize("text, words", [
    ("warm_prefixes: [{name: sys}]\n", ["warm_prefixes", "needs answer_llm_url"]),
    ("answer_llm_url: http://127.0.0.1:8000/v1\nwarm_prefixes: [{name: a}, {name: a}]\n", ["'a' is repeated"]),
    ("answer_llm_url: http://127.0.0.1:8000/v1\nwarm_prefixes: [{name: a, docs: [1]}]\n", ["unknown keys", "documents"]),
    ("answer_llm_url: http://127.0.0.1:8000/v1\nwarm_prefixes: {name: a}\n", ["must be a list"]),
    ("warm_interval_s: 0\n", ["warm_interval_s=0", "> 0"]),
])
def test_warm_prefix_settings_refused(tmp_path, text, words):
    _assert_refused(tmp_path, text, words)


def test_warm_prefixes_accepted_with_a_server(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("answer: true\nanswer_llm_url: http://127.0.0.1:8000/v1\nwarm_interval_s: 30\n"
                 "warm_prefixes:\n  - {name: system}\n  - {name: hot, documents: ['4983', 5836]}\n")
    c = load_config(p)
    assert [e["name"] for e in c.warm_prefixes] == ["system", "hot"] and c.warm_interval_s == 30.0


@pytest.mark.parametrize("text, words", [
    ("retrieve: maybe\n", ["retrieve='maybe'", "bool"]),
    ("retrieve_max_k: 0\n", ["retrieve_max_k=0", ">= 1"]),
    ("faithfulness_threshold: 1.5\n", ["faithfulness_threshold=1.5", "(0, 1)"]),
    ("faithfulness_threshold: high\n", ["faithfulness_threshold='high'"]),
    ("faithfulness: true\nfaithfulness_model: no-such-scorer\n", ["faithfulness_model='no-such-scorer'", "cannot be loaded"]),
    ("faithfulness: true\nfaithfulness_model: reranker-l2\n", ["faithfulness_model='reranker-l2'", "not a faithfulness"]),
    ("intent: true\nintent_model: models/no-such-intent\n", ["intent_model='models/no-such-intent'", "ragfix train intent"]),
    ("max_items: 0\n", ["max_items=0", ">= 1"]),
    ("max_batch_items: -3\n", ["max_batch_items=-3", ">= 1"]),
])
def test_answer_warm_prefix_and_specialist_settings_refused_with_the_key(tmp_path, text, words):
    _assert_refused(tmp_path, text, words)


