"""``ragfix serve --replicas 2`` on a loopback port: two processes, one socket; every request is
answered exactly once, by one replica, with its own documents; SIGTERM drains both and exits 0."""
from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.integration.serve_process import ServeProcess

N_REQUESTS = 40


def test_two_replicas_answer_every_request_once():
    srv = ServeProcess(["--replicas", "2", "--model", "reranker-l2", "--backend", "fp32", "--torch-threads", "1",
                        "--max-queue", "0", "--deadline-ms", "120000", "--drain-timeout-s", "30"],
                       pattern=r"2 replicas on (http://127\.0\.0\.1:\d+)")
    proc, lines = srv.proc, srv.lines
    try:
        base = srv.wait_listening(60)
        ready, t_end = 0, time.monotonic() + 240
        while ready < 10 and time.monotonic() < t_end:  # readyz lands on either replica: 10 in a row
            try:
                ok = httpx.get(base + "/readyz", timeout=10).status_code == 200
            except httpx.TransportError:
                ok = False
            ready = ready + 1 if ok else 0
            time.sleep(0.1 if ok else 0.5)
        assert ready >= 10, "replicas not ready within 240 s:\n" + "".join(lines[-30:])

        def ask(i: int) -> tuple[int, httpx.Response]:
            docs = [f"request {i} document a about vitamin C", f"request {i} document b about scurvy"]
            with httpx.Client(timeout=120) as client:  # a fresh connection per request: the kernel picks the replica
                return i, client.post(base + "/v1/rerank", json={"query": f"question {i}", "documents": docs,
                                                                 "return_documents": True})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(N_REQUESTS)))
        seen: dict[int, int] = {}
        replicas = set()
        for i, r in answers:
            assert r.status_code == 200, r.text
            texts = sorted(x["document"]["text"] for x in r.json()["results"])
            assert texts == [f"request {i} document a about vitamin C", f"request {i} document b about scurvy"]
            seen[i] = seen.get(i, 0) + 1
            replicas.add(r.headers["x-ragfix-replica"])
        assert seen == {i: 1 for i in range(N_REQUESTS)}
        assert replicas == {"0", "1"}, f"one replica answered everything: {replicas}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, "".join(lines[-30:])
    finally:
        srv.stop()
