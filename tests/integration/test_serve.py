"""``ragfix serve`` as a real subprocess on a free loopback port: every endpoint, the 429 path, a
malformed body, an oversized body, the bearer token, a missed deadline and the SIGTERM drain.

The server runs the packaged 2-layer reranker (reranker-l2, fp32, one torch thread) on real
SciFact abstracts; one server serves the whole module and the drain test ends it.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from data import data_root, load_documents_jsonl

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="module")
def server():
    env = {**os.environ, "RAGFIX_SERVE_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "serve", "--port", "0", "--model", "reranker-l2", "--backend", "fp32", "--torch-threads", "1",
           "--max-queue", str(MAX_QUEUE), "--max-body-bytes", str(MAX_BODY), "--token-env", "RAGFIX_SERVE_TOKEN",
           "--drain-timeout-s", "30", "--deadline-ms", "60000"]  # a busy test machine must not turn answers into deadline 503s
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if m and not url:
                url.append(m.group(1))
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not found.wait(90):
            raise RuntimeError("server did not start within 90 s:\n" + "".join(lines[-30:]))
        base = url[0]
        t_end = time.monotonic() + 90
        while time.monotonic() < t_end:
            r = httpx.get(base + "/readyz")
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.json()["error"]["type"] == "loading", r.text
            time.sleep(0.2)
        else:
            raise RuntimeError("model not ready within 90 s:\n" + "".join(lines[-30:]))
        yield {"url": base, "proc": proc, "log": lines}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


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


def test_sigterm_drains_in_flight_requests(server, abstracts):
    """Last in the module: SIGTERM while requests run; they all finish, a new one gets 503, exit 0."""
    base, proc = server["url"], server["proc"]
    # three copies of the abstracts per request: enough work that the drain outlasts the late request below
    bodies = [{"query": f"drain {i}: statins and muscle pain", "texts": abstracts * 3} for i in range(MAX_QUEUE)]

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
    while time.monotonic() < t_end:  # wait until all four are admitted and some are still in flight
        total, depth = admitted()
        if total - answered_before >= MAX_QUEUE and depth >= 1:
            break
        time.sleep(0.005)
    else:
        pytest.fail("the requests were never all admitted while some were in flight")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    late = httpx.post(base + "/v1/rerank", json={"query": "late", "texts": ["d"]}, headers=AUTH)
    assert late.status_code == 503 and late.json()["error"]["type"] == "draining" and int(late.headers["retry-after"]) >= 1
    assert httpx.get(base + "/readyz").status_code == 503
    runner.join(60)
    assert len(results) == MAX_QUEUE
    assert [r.status_code for r in results] == [200] * MAX_QUEUE, [r.text[:200] for r in results if r.status_code != 200]
    assert all(len(r.json()) == 3 * len(abstracts) for r in results)
    assert proc.wait(30) == 0, "".join(server["log"][-20:])
    assert "draining" in "".join(server["log"])
