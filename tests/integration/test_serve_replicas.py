"""``ragfix serve --replicas 2`` on a loopback port: two processes, one socket; every request is
answered exactly once, by one replica, with its own documents; SIGTERM drains both and exits 0."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
N_REQUESTS = 40


def test_two_replicas_answer_every_request_once():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "serve", "--port", "0", "--replicas", "2", "--model", "reranker-l2", "--backend", "fp32",
           "--torch-threads", "1", "--max-queue", "0", "--deadline-ms", "120000", "--drain-timeout-s", "30"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    url: list[str] = []
    found = threading.Event()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = re.search(r"2 replicas on (http://127\.0\.0\.1:\d+)", line)
            if m and not url:
                url.append(m.group(1))
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert found.wait(60), "no listening line:\n" + "".join(lines[-30:])
        base = url[0]
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
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
