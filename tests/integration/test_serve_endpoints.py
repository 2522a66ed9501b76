"""``/v1/retrieve``, ``/v1/score/faithfulness``, ``/v1/classify/intent``, ``/health`` and ``/ready`` on a real
``ragfix serve`` subprocess (free loopback port, bearer token), each answer checked against the library object
the benchmarks use, called directly in this process on the same inputs.

The server (one for the module) runs the first stage as the hybrid (BM25 + MiniLM, RRF) over the first 60
SciFact abstracts, the registry's faithfulness specialist (``registry.load_faithfulness``) and the CLINC150
intent model (``models/intent-clinc150`` with its MiniLM embedder), with ``/v1/answer`` off. Inputs are real:
SciFact claims, HaluEval QA rows, CLINC150 test utterances (in scope and out of scope).
"""
from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest

from data import data_root, load_documents_jsonl
from tests.integration.serve_process import ROOT, ServeProcess

TOKEN = "test-token-8e1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_QUEUE = 3
MAX_BODY = 100_000
MAX_ITEMS = 40
MAX_TEXT = 5_000
CORPUS_LIMIT = 60
CONFIG = f"""
retrieve: true
retrieve_max_k: 50
faithfulness: true
intent: true
answer_corpus: scifact
answer_corpus_limit: {CORPUS_LIMIT}
answer_retriever: hybrid
max_items: {MAX_ITEMS}
max_batch_items: 16
max_text_chars: {MAX_TEXT}
"""
ENDPOINTS = ("/v1/retrieve", "/v1/score/faithfulness", "/v1/classify/intent")


def _need_data() -> None:
    for rel in ("scifact/corpus.jsonl", "clinc150/data_full.json"):
        if not (data_root() / rel).is_file():
            pytest.skip(f"{data_root() / rel} not found (set RAGFIX_DATA)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _need_data()
    config = tmp_path_factory.mktemp("serve-endpoints") / "serve.yaml"
    config.write_text(CONFIG)
    srv = ServeProcess(["--config", config, "--model", "reranker-l2", "--torch-threads", "1", "--max-queue", MAX_QUEUE,
                        "--max-body-bytes", MAX_BODY, "--token-env", "RAGFIX_SERVE_TOKEN", "--deadline-ms", "60000",
                        "--drain-timeout-s", "10"], env={"RAGFIX_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)})
    try:
        from registry import load_embedder

        embedder = load_embedder("minilm")  # this process's own copy, loaded while the server loads (2 cores)
        embedder.encode_queries(["warm-up"])
        base = srv.wait_ready("/ready", 180)
        yield {"url": base, "proc": srv.proc, "log": srv.lines, "embedder": embedder}
    finally:
        srv.stop(grace=20)


@pytest.fixture(scope="module")
def docs():
    _need_data()
    return load_documents_jsonl(data_root() / "scifact" / "corpus.jsonl")[:CORPUS_LIMIT]


@pytest.fixture(scope="module")
def embedder(server):
    return server["embedder"]


@pytest.fixture(scope="module")
def intent_model(embedder):
    from registry import load_intent_model

    return load_intent_model(ROOT / "models" / "intent-clinc150", embedder=embedder)


@pytest.fixture(scope="module")
def clinc_texts() -> list[str]:
    from data.clinc import load_clinc150

    d = load_clinc150()
    ins, oos = d.split("test")[0], d.split("oos_test")[0]
    return ins[::150][:20] + oos[::50][:6]


def _no_trace(r: httpx.Response) -> None:
    assert "Traceback" not in r.text and 'File "' not in r.text, r.text


def test_health_and_ready_as_the_issue_names_them(server):
    base = server["url"]
    for path in ("/health", "/healthz"):
        r = httpx.get(base + path)
        assert r.status_code == 200 and r.json() == {"status": "ok"}, (path, r.text)
    for path in ("/ready", "/readyz"):
        r = httpx.get(base + path)
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        assert body["status"] == "ready" and body["model"].startswith("reranker-minilm-l2")
        assert body["endpoints"] == {"/v1/retrieve": "hybrid", "/v1/score/faithfulness": "faithfulness",
                                     "/v1/classify/intent": "intent-clinc150"}, body
    r = httpx.post(base + "/v1/answer", json={"query": "q"}, headers=AUTH)  # answer: false here
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_enabled"


def test_retrieve_equals_the_hybrid_retriever(server, docs, embedder):
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    direct = HybridRetriever([BM25Retriever(), DenseRetriever(embedder)], names=("bm25", "dense")).index(docs)
    base = server["url"]
    for query, k in (("Vitamin D deficiency is associated with lower bone mineral density", 5),
                     ("microRNA regulation of stem cell differentiation", 12)):
        r = httpx.post(base + "/v1/retrieve", json={"query": query, "top_k": k, "return_texts": True}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        res = direct.search([query], k)
        want_ids = [docs[int(i)].id for i in res.indices[0] if i >= 0]
        assert [x["id"] for x in body["results"]] == want_ids
        np.testing.assert_allclose([x["score"] for x in body["results"]], res.scores[0][: len(want_ids)], rtol=1e-6)
        by_id = {d.id: d for d in docs}
        assert all(x["text"] == by_id[x["id"]].text and x["title"] == by_id[x["id"]].title for x in body["results"])
        assert body["meta"]["retriever"] == "hybrid" and body["meta"]["corpus_size"] == CORPUS_LIMIT
        assert body["meta"]["shared_with_answer"] is False
    r = httpx.post(base + "/v1/retrieve", json={"query": "protein folding", "top_k": 3}, headers=AUTH)
    assert "text" not in r.json()["results"][0]
    r = httpx.post(base + "/v1/retrieve", json={"query": "protein folding", "top_k": 51}, headers=AUTH)
    assert r.status_code == 422 and "retrieve_max_k=50" in r.json()["error"]["message"]


def test_faithfulness_equals_the_registry_scorer(server):
    from data.faithfulness import load_halueval
    from generate.gate import FaithfulnessGate
    from registry import load_faithfulness

    scorer = load_faithfulness("faithfulness")
    rows = load_halueval("qa")[:6]
    items = []
    for row in rows:
        for answer in (row["right_answer"], row["hallucinated_answer"]):
            items.append({"question": row["question"], "passage": row["knowledge"], "answer": answer})
    multi = {"question": rows[0]["question"], "passages": [rows[1]["knowledge"], rows[0]["knowledge"]], "answer": rows[0]["right_answer"]}
    r = httpx.post(server["url"] + "/v1/score/faithfulness", json={"items": items + [multi], "check_claims": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    got = body["results"]
    assert len(got) == len(items) + 1 and body["meta"]["threshold"] == scorer.threshold
    want = scorer.predict_proba([x["passage"] for x in items], [x["answer"] for x in items], [x["question"] for x in items])
    np.testing.assert_allclose([g["score"] for g in got[:-1]], want, rtol=1e-6, atol=1e-9)
    for g, p in zip(got, want):
        assert g["label"] == ("supported" if p >= scorer.threshold else "unsupported") and g["threshold"] == scorer.threshold
    assert {g["label"] for g in got[:-1]} == {"supported", "unsupported"}, got  # real data: both outcomes occur
    per_passage = scorer.predict_proba(multi["passages"], [multi["answer"]] * 2, [multi["question"]] * 2)
    assert got[-1]["best_passage"] == int(np.argmax(per_passage))
    np.testing.assert_allclose(got[-1]["passage_scores"], per_passage, rtol=1e-6)
    gate = FaithfulnessGate(scorer)
    for item, g in zip(items + [multi], got):
        want_gate = gate.check(item["question"], item["answer"], item.get("passages") or [item["passage"]])
        assert g["gate"]["verdict"] == want_gate.verdict and g["gate"]["passed"] == want_gate.passed
        assert [c["verdict"] for c in g["gate"]["claims"]] == [c.verdict for c in want_gate.claims]


def test_intent_equals_the_intent_model(server, intent_model, clinc_texts):
    r = httpx.post(server["url"] + "/v1/classify/intent", json={"texts": clinc_texts}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    x = intent_model.embed(clinc_texts)
    labels, conf = intent_model.predict_from_embeddings(x)
    got = body["results"]
    assert [g["label"] for g in got] == [str(lab) for lab in labels]
    np.testing.assert_allclose([g["confidence"] for g in got], conf, atol=1e-5)
    assert [g["out_of_scope"] for g in got] == [bool(c < intent_model.oos_threshold) for c in conf]
    assert any(g["out_of_scope"] for g in got) and not all(g["out_of_scope"] for g in got)
    assert all(g["intent"] in intent_model.classifier.classes_ for g in got)
    assert body["meta"]["oos_threshold"] == pytest.approx(intent_model.oos_threshold) and body["meta"]["n_intents"] == 150


def test_bearer_token_on_every_new_endpoint(server):
    base = server["url"]
    bodies = {"/v1/retrieve": {"query": "q"}, "/v1/score/faithfulness": {"items": [{"passage": "p", "answer": "a"}]},
              "/v1/classify/intent": {"texts": ["hi"]}}
    for ep in ENDPOINTS:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = httpx.post(base + ep, json=bodies[ep], headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (ep, headers, r.text)
            _no_trace(r)
        assert httpx.post(base + ep, json=bodies[ep], headers=AUTH).status_code == 200
    assert httpx.get(base + "/health").status_code == 200 and httpx.get(base + "/ready").status_code == 200  # probes need no token


@pytest.mark.parametrize("endpoint, body, field", [
    ("/v1/retrieve", {"top_k": 3}, "query"),
    ("/v1/retrieve", {"query": "q", "top_k": 0}, "top_k"),
    ("/v1/retrieve", {"query": "q", "topk": 3}, "topk"),
    ("/v1/score/faithfulness", {"items": []}, "items"),
    ("/v1/score/faithfulness", {"items": [{"passage": "p", "passages": ["p"], "answer": "a"}]}, "exactly one"),
    ("/v1/score/faithfulness", {"items": [{"passage": "p"}]}, "answer"),
    ("/v1/classify/intent", {"texts": []}, "texts"),
    ("/v1/classify/intent", {"texts": ["ok", "  "]}, "texts[1] is blank"),
    ("/v1/classify/intent", {"text": "hi"}, "text"),
])
def test_invalid_bodies_are_422_naming_the_field(server, endpoint, body, field):
    r = httpx.post(server["url"] + endpoint, json=body, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request", r.text
    assert field in r.text
    _no_trace(r)


def test_malformed_json_is_400(server):
    for ep in ENDPOINTS:
        r = httpx.post(server["url"] + ep, content=b'{"texts": ["unterminated', headers={**AUTH, "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json", (ep, r.text)
        _no_trace(r)


def test_oversized_requests_are_413(server):
    base = server["url"]
    r = httpx.post(base + "/v1/classify/intent", json={"texts": ["x" * 1000] * (MAX_BODY // 1000 + 5)}, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
    r = httpx.post(base + "/v1/classify/intent", json={"texts": ["hello"] * (MAX_ITEMS + 1)}, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["type"] == "too_many_items" and f"{MAX_ITEMS}" in r.text
    r = httpx.post(base + "/v1/score/faithfulness", json={"items": [{"passage": "p " * MAX_TEXT, "answer": "a"}]}, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["type"] == "text_too_long"
    r = httpx.post(base + "/v1/retrieve", json={"query": "q" * (MAX_TEXT + 1)}, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["type"] == "text_too_long"


def test_missed_deadline_is_503_with_retry_after(server):
    r = httpx.post(server["url"] + "/v1/classify/intent", json={"texts": ["what's the weather like"]},
                   headers={**AUTH, "X-Request-Timeout-Ms": "0.001"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "deadline" and int(r.headers["retry-after"]) >= 1, r.text
    r = httpx.post(server["url"] + "/v1/retrieve", json={"query": "q"}, headers={**AUTH, "X-Request-Timeout-Ms": "later"})
    assert r.status_code == 400 and "X-Request-Timeout-Ms" in r.text


async def _burst(base: str, endpoint: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(bodies))) as client:
        return await asyncio.gather(*(client.post(base + endpoint, json=b, headers=AUTH) for b in bodies))


def test_queue_full_is_429_and_batched_answers_equal_the_model(server, intent_model, clinc_texts):
    base = server["url"]
    bodies = [{"texts": clinc_texts[i % 5:][:20]} for i in range(8 * MAX_QUEUE)]
    rs = asyncio.run(_burst(base, "/v1/classify/intent", bodies))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 429, 503}, [r.text[:200] for r in rs]
    assert codes.count(429) >= 1 and codes.count(200) >= 1, codes
    want = {t: str(lab) for t, lab in zip(clinc_texts, intent_model.predict(clinc_texts))}
    for b, r in zip(bodies, rs):
        if r.status_code == 200:  # answered inside a cross-request batch: still the model's own labels
            assert [g["label"] for g in r.json()["results"]] == [want[t] for t in b["texts"]]
        else:
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["type"] in ("queue_full", "deadline"), r.text
    text = httpx.get(base + "/metrics", headers=AUTH).text
    ep = 'endpoint="/v1/classify/intent"'
    assert f'ragfix_serve_requests_total{{{ep},status="429"}} {float(codes.count(429))}' in text
    assert f'ragfix_serve_endpoint_rejected_total{{{ep},reason="queue_full"}} {float(codes.count(429))}' in text
    assert f"ragfix_serve_endpoint_queue_depth{{{ep}}} 0.0" in text and "ragfix_serve_queue_depth 0.0" in text
    m = re.search(rf"^ragfix_serve_endpoint_batch_items_sum\{{{ep}\}} (\S+)", text, re.M)
    assert m and float(m.group(1)) >= 20 * codes.count(200)  # every answered text went through a batch
    for stage in ("queue", "compute", "total"):
        assert re.search(rf'^ragfix_serve_endpoint_stage_seconds_count\{{{ep},stage="{stage}"\}} [1-9]', text, re.M), stage
    for other in ("/v1/retrieve", "/v1/score/faithfulness"):
        assert re.search(rf'^ragfix_serve_endpoint_batch_requests_count\{{endpoint="{other}"\}} [1-9]', text, re.M), other


async def _mixed(base: str, calls: list[tuple[str, dict]]) -> tuple[list[httpx.Response], int]:
    """Every call at once; a refused one (429/503 with Retry-After) retries after 50 ms until answered.
    Returns the final responses and how many refusals were retried."""
    refused = [0]

    async def one(client: httpx.AsyncClient, ep: str, body: dict) -> httpx.Response:
        for _ in range(200):
            r = await client.post(base + ep, json=body, headers=AUTH)
            if r.status_code not in (429, 503):
                return r
            assert int(r.headers["retry-after"]) >= 1, r.text
            refused[0] += 1
            await asyncio.sleep(0.05)
        return r

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(calls))) as client:
        rs = await asyncio.gather(*(one(client, ep, b) for ep, b in calls))
    return rs, refused[0]


def test_endpoints_at_once_share_the_embedder_and_answer_right(server, docs, intent_model, clinc_texts):
    """Retrieval (dense half) and intent requests at once: one MiniLM, two batcher threads; every request,
    retried on an explicit 429/503, ends with its right answer, never a 500."""
    from retrieval.retrievers import BM25Retriever, DenseRetriever, HybridRetriever

    assert "embedder shared with the retriever" in "".join(server["log"])
    queries = ["statin therapy and muscle pain", "T cell receptor signalling", "obesity and insulin resistance"]
    calls = [c for i in range(6) for c in (("/v1/retrieve", {"query": queries[i % 3], "top_k": 5}),
                                           ("/v1/classify/intent", {"texts": clinc_texts[i:i + 4]}))]
    rs, _ = asyncio.run(_mixed(server["url"], calls))
    assert [r.status_code for r in rs] == [200] * len(calls), [r.text[:200] for r in rs]
    direct = HybridRetriever([BM25Retriever(), DenseRetriever(intent_model.embedder)], names=("bm25", "dense")).index(docs)
    for (ep, body), r in zip(calls, rs):
        if ep == "/v1/retrieve":
            res = direct.search([body["query"]], 5)
            assert [x["id"] for x in r.json()["results"]] == [docs[int(i)].id for i in res.indices[0]]
        else:
            assert [g["label"] for g in r.json()["results"]] == [str(x) for x in intent_model.predict(body["texts"])]
