"""serve.specialists.ItemBatcher: cross-request batches that keep each request's rows, skip cancelled
requests, isolate a failing one and finish what was queued on close (no model: a plain function)."""
from __future__ import annotations

import threading
import time

import pytest

from serve.specialists import ItemBatcher, LockedEmbedder


def test_requests_share_a_pass_and_get_their_own_rows():
    calls: list[list[int]] = []
    gate = threading.Event()

    def fn(items):
        gate.wait(5)
        calls.append(list(items))
        return [x * 10 for x in items]

    seen: list[tuple[int, int]] = []
    b = ItemBatcher(fn, "t", max_wait_ms=20, max_items=100, on_batch=lambda r, n, s: seen.append((r, n)))
    first = b.submit([1])          # the worker takes it and blocks in fn
    time.sleep(0.2)
    futs = [b.submit([i, i + 1]) for i in (2, 4, 6)]  # queued meanwhile: one pass for all three
    gate.set()
    assert first.result(5)[0] == [10]
    assert [f.result(5)[0] for f in futs] == [[20, 30], [40, 50], [60, 70]]
    assert calls[1] == [2, 3, 4, 5, 6, 7] and seen[1] == (3, 6)
    rows, queue_s, compute_s = futs[0].result()
    assert queue_s >= 0 and compute_s >= 0
    b.close()


def test_cancelled_request_is_skipped_and_a_failing_one_fails_alone():
    gate = threading.Event()
    ran: list[list] = []

    def fn(items):
        gate.wait(5)
        ran.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [s.upper() for s in items]

    b = ItemBatcher(fn, "t", max_wait_ms=20, max_items=100)
    blocker = b.submit(["a"])
    time.sleep(0.2)
    skipped, bad, good = b.submit(["x"]), b.submit(["bad"]), b.submit(["ok"])
    assert skipped.cancel()  # its deadline passed before it started
    gate.set()
    assert blocker.result(5)[0] == ["A"]
    with pytest.raises(ValueError, match="bad item"):
        bad.result(5)
    assert good.result(5)[0] == ["OK"]
    assert not any("x" in r for r in ran)
    assert b.pending_items == 0
    b.close()


def test_close_finishes_queued_work_then_refuses():
    b = ItemBatcher(lambda items: [len(s) for s in items], "t", max_wait_ms=1, max_items=2)
    futs = [b.submit(["ab", "c"]) for _ in range(5)]
    b.close()
    assert all(f.done() and f.result()[0] == [2, 1] for f in futs)
    with pytest.raises(RuntimeError, match="submit after close"):
        b.submit(["late"])
    with pytest.raises(ValueError, match="max_items"):
        ItemBatcher(lambda items: items, "t", max_items=0)


def test_locked_embedder_runs_one_encode_at_a_time():
    active, peak = [0], [0]
    lock = threading.Lock()

    class Slow:
        name, fingerprint = "slow", "fp"

        def encode_queries(self, texts):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            with lock:
                active[0] -= 1
            return texts

        encode_documents = encode_queries

    e = LockedEmbedder(Slow())
    assert (e.name, e.fingerprint) == ("slow", "fp")
    threads = [threading.Thread(target=e.encode_queries, args=(["q"],)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
