"""``ragfix serve`` as a real subprocess on a free loopback port: every endpoint, the 429 path, a
malformed body, an oversized body, the bearer token, a missed deadline and the SIGTERM drain.

The server runs the packaged 2-layer reranker (reranker-l2, fp32, one torch thread) on real
SciFact abstracts, and ``/v1/answer`` runs the product pipeline (BM25 + MiniLM hybrid over the
first 60 SciFact abstracts, the fused rerank stage over that reranker, SmolLM2 answers of a few
tokens) from a YAML config; one server serves the whole module and the drain test ends it.
"""
from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time

import httpx
import pytest

from data import data_root, load_documents_jsonl
from tests.integration.serve_process import ServeProcess
TOKEN = "test-token-5f2c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_QUEUE = 4
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def abstracts() -> list[str]:
    corpus = data_root() / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"SciFact corpus not found at {corpus} (set RAGFIX_DATA)")
    docs = load_documents_jsonl(corpus)[:24]
    return [d.full_text()[:700] for d in docs]


ANSWER_MAX_TOKENS = 8
ANSWER_CONFIG = f"""
answer: true
answer_llm: smollm2
answer_corpus: scifact
answer_corpus_limit: 60
answer_retriever: hybrid
answer_retrieve_k: 10
answer_context_k: 2
answer_max_tokens: {ANSWER_MAX_TOKENS}
retrieve: true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (data_root() / "scifact" / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact corpus not found under {data_root()} (set RAGFIX_DATA)")
    config = tmp_path_factory.mktemp("serve") / "serve.yaml"
    config.write_text(ANSWER_CONFIG)
    srv = ServeProcess(["--config", config, "--model", "reranker-l2", "--backend", "fp32", "--torch-threads", "1",
                        "--max-queue", MAX_QUEUE, "--max-body-bytes", MAX_BODY, "--token-env", "RAGFIX_SERVE_TOKEN",
                        "--drain-timeout-s", "30", "--deadline-ms", "60000"],  # a busy test machine must not turn answers into deadline 503s
                       env={"RAGFIX_SERVE_TOKEN": TOKEN})
    try:
        base = srv.wait_ready("/readyz", 240)  # the reranker, MiniLM, SmolLM2, the index and two warm-up answers
        yield {"url": base, "proc": srv.proc, "log": srv.lines}
    finally:
        srv.stop()


def _no_trace(r: httpx.Response) -> None:
    assert "Traceback" not in r.text and 'File "' not in r.text, r.text


def test_health_ready_and_rerank_shapes(server, abstracts):
    base = server["url"]
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(base + "/readyz")
    assert ready.status_code == 200 and ready.json()["model"].startswith("reranker-minilm-l2")
    query = "Vitamin C deficiency causes scurvy"
    docs = ["Scurvy results from a lack of vitamin C (ascorbic acid) in the diet.", abstracts[0], abstracts[1]]
    r = httpx.post(base + "/v1/rerank", json={"query": query, "documents": docs, "top_n": 2, "return_documents": True}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["index"] for x in body["results"]][0] == 0 and len(body["results"]) == 2
    assert body["results"][0]["document"]["text"] == docs[0]
    assert body["results"][0]["relevance_score"] >= body["results"][1]["relevance_score"]
    assert 0.0 <= body["results"][1]["relevance_score"] <= 1.0
    tei = httpx.post(base + "/v1/rerank", json={"query": query, "texts": docs, "raw_scores": True, "return_text": True}, headers=AUTH)
    assert tei.status_code == 200, tei.text
    rows = tei.json()
    assert isinstance(rows, list) and sorted(x["index"] for x in rows) == [0, 1, 2]
    assert rows[0]["index"] == 0 and rows[0]["text"] == docs[0]
    cohere_scores = {x["index"]: x["relevance_score"] for x in httpx.post(
        base + "/v1/rerank", json={"query": query, "documents": docs}, headers=AUTH).json()["results"]}
    import math
    for x in rows:  # raw logits through the sigmoid give the Cohere-shaped scores
        assert abs(1 / (1 + math.exp(-x["score"])) - cohere_scores[x["index"]]) < 1e-5


def test_bearer_token(server):
    base, body = server["url"], {"query": "q", "texts": ["d"]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.post(base + "/v1/rerank", json=body, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (headers, r.text)
        _no_trace(r)
    assert httpx.get(base + "/metrics").status_code == 401
    assert httpx.get(base + "/healthz").status_code == 200  # probes need no token


def test_malformed_and_invalid_bodies(server):
    base = server["url"]
    r = httpx.post(base + "/v1/rerank", content=b'{"query": "q", "texts": ["unterminated', headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"
    _no_trace(r)
    r = httpx.post(base + "/v1/rerank", json={"texts": ["d"]}, headers=AUTH)
    assert r.status_code == 422 and ["body", "query"] in [d["loc"] for d in r.json()["error"]["details"]]
    r = httpx.post(base + "/v1/rerank", json={"query": "q", "texts": ["d"], "documents": ["d"]}, headers=AUTH)
    assert r.status_code == 422 and "exactly one" in r.text
    r = httpx.post(base + "/v1/rerank", json={"query": "q", "texts": ["d"]}, headers={**AUTH, "X-Request-Timeout-Ms": "soon"})
    assert r.status_code == 400 and "X-Request-Timeout-Ms" in r.json()["error"]["message"]
    _no_trace(r)


def test_oversized_body_is_413(server):
    base = server["url"]
    big = {"query": "q", "texts": ["x" * 1000] * (MAX_BODY // 1000 + 10)}
    r = httpx.post(base + "/v1/rerank", json=big, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit still holds while reading
        yield b'{"query": "q", "texts": ["'
        for _ in range(MAX_BODY // 10_000 + 5):
            yield b"y" * 10_000
        yield b'"]}'

    r = httpx.post(base + "/v1/rerank", content=chunks(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413


def test_missed_deadline_is_503_with_retry_after(server, abstracts):
    r = httpx.post(server["url"] + "/v1/rerank", json={"query": "q", "texts": abstracts},
                   headers={**AUTH, "X-Request-Timeout-Ms": "0.5"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "deadline", r.text
    assert int(r.headers["retry-after"]) >= 1


async def _burst(base: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(bodies))) as client:
        return await asyncio.gather(*(client.post(base + "/v1/rerank", json=b, headers=AUTH) for b in bodies))


def test_queue_full_is_429_and_nothing_fails(server, abstracts):
    base = server["url"]
    bodies = [{"query": f"claim {i}: vitamin D and bone density", "texts": abstracts} for i in range(6 * MAX_QUEUE)]
    rs = asyncio.run(_burst(base, bodies))
    codes = [r.status_code for r in rs]
    # every request: its answer or an explicit 429 (queue full) / 503 (deadline) with Retry-After, never a 5xx error
    assert set(codes) <= {200, 429, 503}, [r.text[:200] for r in rs]
    assert codes.count(429) >= 1 and codes.count(200) >= 1, [r.text[:200] for r in rs]
    for r in rs:
        if r.status_code in (429, 503):
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["type"] == ("queue_full" if r.status_code == 429 else "deadline"), r.text
        else:
            assert len(r.json()) == len(abstracts)
    text = httpx.get(base + "/metrics", headers=AUTH).text
    assert f'ragfix_serve_requests_total{{endpoint="/v1/rerank",status="429"}} {float(codes.count(429))}' in text
    assert 'ragfix_serve_rejected_total{reason="queue_full"}' in text
    assert "ragfix_serve_queue_depth 0.0" in text
    m = re.search(r"^ragfix_serve_batch_requests_count (\S+)", text, re.M)
    assert m and float(m.group(1)) >= 1
    m = re.search(r"^ragfix_serve_batch_requests_sum (\S+)", text, re.M)
    assert m and float(m.group(1)) >= codes.count(200)  # every answered request went through a pass
    assert 'ragfix_serve_request_seconds_bucket{endpoint="/v1/rerank",le="+Inf"}' in text


QUESTION = "Does vitamin D deficiency affect bone density?"


def _sse_events(response: httpx.Response) -> list[tuple[str, dict, float]]:
    """(event, data, arrival time) for each server-sent event of a streaming response, as it arrives."""
    out, event = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((event, json.loads(line[len("data: "):]), time.perf_counter()))
    return out


def test_answer_streams_tokens_then_timings(server):
    base = server["url"]
    assert httpx.get(base + "/readyz").json()["answer_llm"] == "smollm2"
    with httpx.stream("POST", base + "/v1/answer", json={"query": QUESTION, "max_tokens": 6}, headers=AUTH, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(r)
    kinds = [e[0] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "error" not in kinds, kinds
    tokens = [e for e in events if e[0] == "token"]
    assert 1 <= len(tokens) <= 6
    done = events[-1][1]
    # the streamed deltas are the answer (the final text is stripped)
    assert "".join(t[1]["text"] for t in tokens).strip() == done["answer"] and done["answer"]
    # streamed, not buffered: the first token reached the client before the last one was decoded
    assert events[-1][2] - tokens[0][2] > 0.005 or len(tokens) == 1
    t = done["timings_ms"]
    assert {"queue", "retrieve", "rerank", "generate", "ttft", "total"} <= set(t), t
    assert 0 < t["ttft"] <= t["total"] and t["rerank"] > 0 and t["generate"] > 0
    assert [s["stage"] for s in done["stages"]] == ["retrieve", "rerank", "generate"]
    assert done["stages"][1]["counts"]["pairs"] == 10  # answer_retrieve_k candidates went through the fused rerank stage
    assert len(done["passages"]) == 2 and len(tokens) <= done["usage"]["completion_tokens"] <= 6
    assert set(done["citations"]) <= {p["id"] for p in done["passages"]}


def test_answer_json_equals_the_stream(server):
    base = server["url"]
    body = {"query": QUESTION, "max_tokens": 6, "stream": False, "return_passages": False}
    r = httpx.post(base + "/v1/answer", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    out = r.json()
    assert "passages" not in out and out["usage"]["completion_tokens"] <= 6 and out["answer"]
    with httpx.stream("POST", base + "/v1/answer", json={**body, "stream": True}, headers=AUTH, timeout=120) as s:
        streamed = _sse_events(s)[-1][1]
    assert streamed["answer"] == out["answer"]  # greedy decoding: the same answer either way
    text = httpx.get(base + "/metrics", headers=AUTH).text
    assert re.search(r'^ragfix_serve_answer_stage_seconds_count\{stage="rerank"\} [1-9]', text, re.M), text
    assert re.search(r'^ragfix_serve_answer_tokens_total\{kind="completion"\} [1-9]', text, re.M)


def test_retrieve_is_the_answer_pipelines_first_stage(server):
    """With answer: true, /v1/retrieve serves the pipeline's own hybrid index (one index, not a second copy):
    its top candidates are the first-stage candidates an answer reports, over the same 60 documents."""
    base = server["url"]
    r = httpx.post(base + "/v1/retrieve", json={"query": QUESTION, "top_k": 10}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["meta"]["shared_with_answer"] is True and body["meta"]["retriever"] == "hybrid" and body["meta"]["corpus_size"] == 60
    ids = [x["id"] for x in body["results"]]
    assert len(ids) == 10 and len(set(ids)) == 10
    answer = httpx.post(base + "/v1/answer", json={"query": QUESTION, "max_tokens": 1, "stream": False}, headers=AUTH, timeout=120).json()
    assert {p["id"] for p in answer["passages"]} <= set(ids)  # the reranked context comes from these 10 candidates


def test_answer_refuses_bad_requests(server):
    base = server["url"]
    cases = [
        ({"stream": False}, 422, "invalid_request"),                                            # no query
        ({"query": QUESTION, "max_tokens": ANSWER_MAX_TOKENS + 1}, 422, "invalid_request"),     # over answer_max_tokens
        ({"query": QUESTION, "history": [{"role": "system", "content": "x"}]}, 422, "invalid_request"),
        ({"query": "x" * 20001}, 413, "text_too_long"),
    ]
    for body, status, kind in cases:
        r = httpx.post(base + "/v1/answer", json=body, headers=AUTH)
        assert r.status_code == status and r.json()["error"]["type"] == kind, (body, r.text)
        _no_trace(r)
    r = httpx.post(base + "/v1/answer", content=b'{"query": ', headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"
    assert httpx.post(base + "/v1/answer", json={"query": QUESTION}).status_code == 401
    r = httpx.post(base + "/v1/answer", json={"query": QUESTION}, headers={**AUTH, "X-Request-Timeout-Ms": "1"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "deadline" and int(r.headers["retry-after"]) >= 1, r.text


async def _answer_burst(base: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(base + "/v1/answer", json={"query": f"{QUESTION} ({i})", "max_tokens": 1,
                                                                              "stream": False, "return_passages": False}, headers=AUTH)
                                      for i in range(n)))


def test_answer_shares_the_bounded_queue(server):
    rs = asyncio.run(_answer_burst(server["url"], 3 * MAX_QUEUE))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 429, 503}, [r.text[:200] for r in rs]
    assert codes.count(429) >= 1 and codes.count(200) >= 1, codes
    for r in rs:
        if r.status_code != 200:
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["type"] in ("queue_full", "deadline"), r.text


def test_sigterm_drains_in_flight_requests(server, abstracts):
    """Last in the module: SIGTERM while requests run (reranks and a streaming answer); they all finish,
    a new one gets 503, exit 0."""
    base, proc = server["url"], server["proc"]
    # a streaming answer holds one of the MAX_QUEUE slots through the drain
    stream_events: list = []
    started = threading.Event()

    def stream_answer() -> None:
        with httpx.stream("POST", base + "/v1/answer", json={"query": QUESTION, "max_tokens": ANSWER_MAX_TOKENS}, headers=AUTH, timeout=120) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    started.set()
                elif line.startswith("data: "):
                    stream_events.append((event, json.loads(line[6:])))

    streamer = threading.Thread(target=stream_answer)
    streamer.start()
    assert started.wait(60), "the streaming answer never started"
    # three copies of the abstracts per request: enough work that the drain outlasts the late request below
    bodies = [{"query": f"drain {i}: statins and muscle pain", "texts": abstracts * 3} for i in range(MAX_QUEUE - 1)]

    def admitted() -> tuple[float, float]:  # in flight now + answered since the burst began
        text = httpx.get(base + "/metrics", headers=AUTH).text
        depth = re.search(r"^ragfix_serve_queue_depth (\S+)", text, re.M)
        done = re.search(r'^ragfix_serve_requests_total\{endpoint="/v1/rerank",status="200"\} (\S+)', text, re.M)
        return float(depth.group(1)) + float(done.group(1)), float(depth.group(1))  # type: ignore[union-attr]

    answered_before = admitted()[0]
    results: list = []
    runner = threading.Thread(target=lambda: results.extend(asyncio.run(_burst(base, bodies))))
    runner.start()
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end:  # wait until all three are admitted and some are still in flight
        total, depth = admitted()
        if total - answered_before >= MAX_QUEUE - 1 and depth >= 1:
            break
        time.sleep(0.005)
    else:
        pytest.fail("the requests were never all admitted while some were in flight")
    answer_in_flight = not any(e[0] == "done" for e in stream_events)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    assert answer_in_flight, "the answer finished before SIGTERM; the drain was not tested on it"
    late = httpx.post(base + "/v1/rerank", json={"query": "late", "texts": ["d"]}, headers=AUTH)
    assert late.status_code == 503 and late.json()["error"]["type"] == "draining" and int(late.headers["retry-after"]) >= 1
    assert httpx.get(base + "/readyz").status_code == 503
    runner.join(60)
    streamer.join(120)
    assert [e[0] for e in stream_events][-1] == "done" and stream_events[-1][1]["answer"], stream_events[-3:]
    assert len(results) == MAX_QUEUE - 1
    assert [r.status_code for r in results] == [200] * (MAX_QUEUE - 1), [r.text[:200] for r in results if r.status_code != 200]
    assert all(len(r.json()) == 3 * len(abstracts) for r in results)
    assert proc.wait(30) == 0, "".join(server["log"][-20:])
    assert "draining" in "".join(server["log"])
