"""Judge cache (IV): keys, dedup, prompt edits, 8 concurrent writer processes, and a real kill -9 mid-refresh."""
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from distill.judge import LLMJudge
from distill.judge_cache import (JudgeCache, JudgeCacheFormatError, JudgeSpec, LLMJudgeScorer, PairScorerJudge, Scored,
                                 cache_savings)
from distill.ledger import Ledger, Prices
from generate.backends import Generation

ROOT = Path(__file__).resolve().parents[2]
RAW = {"compute": {"cpu_core_hour_usd": 0.036}, "llms": {"api-llm": {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 0.6}}}
PROMPTS = {"version": "v1", "tasks": {
    "relevance": {"system": "s", "user": "Q: {query} P: {passage}", "answers": {"yes": 1, "no": 0}, "max_new_tokens": 3},
    "faithfulness": {"user": "E: {evidence} C: {claim}", "answers": {"yes": 1, "no": 0}},
    "intent": {"user": "{intents} {text}"}}}


class _LenBackend:
    """A deterministic LLM backend (the cache is under test, not an LLM): 'yes' when the passage is long; counts calls."""

    name = "len-llm"

    def __init__(self):
        self.calls = 0

    def generate(self, messages, max_new_tokens=64):
        self.calls += 1
        text = messages[-1]["content"]
        return Generation("yes" if len(text) % 2 else "no", len(text.split()), 1, 0.001, 0.0, self.name)


class _CountingScorer:
    """A judge-contract scorer whose verdict is a hash of the texts, counting every call it is paid for."""

    kind = "llm"
    model = "count"
    batch_size = 4

    def __init__(self, spec):
        self.spec = spec
        self.paid = Counter()
        self._lock = threading.Lock()

    def score_batch(self, pairs):
        with self._lock:
            for p in pairs:
                self.paid[p] += 1
        return [Scored(int(len(q + d) % 2), None, 10, 1, 0.0, 0.001) for q, d in pairs]

    def ledger_kwargs(self):
        return {"pricing": "tokens", "priced_as": "api-llm"}


def _pairs(n, tag="q"):
    return [(f"{tag}{i}", f"document number {i} " + "x" * (i % 7)) for i in range(n)]


def test_key_changes_with_everything_that_can_change_a_verdict():
    base = JudgeSpec("relevance", "sha-a", "v1", "p1", {"max_new_tokens": 3})
    k = base.key("q", "d")
    variants = [JudgeSpec("faithfulness", "sha-a", "v1", "p1", {"max_new_tokens": 3}),
                JudgeSpec("relevance", "sha-b", "v1", "p1", {"max_new_tokens": 3}),
                JudgeSpec("relevance", "sha-a", "v2", "p1", {"max_new_tokens": 3}),
                JudgeSpec("relevance", "sha-a", "v1", "p2", {"max_new_tokens": 3}),
                JudgeSpec("relevance", "sha-a", "v1", "p1", {"max_new_tokens": 4})]
    assert len({k} | {v.key("q", "d") for v in variants}) == 6
    assert base.key("q", "d2") != k and base.key("q2", "d") != k
    assert JudgeSpec("relevance", "sha-a", "v1", "p1", {"max_new_tokens": 3}).key("q", "d") == k  # stable
    with pytest.raises(ValueError, match="model_fingerprint"):
        JudgeSpec("relevance", "")


def test_unchanged_refresh_costs_zero_calls_and_duplicates_fold(tmp_path):
    judge = LLMJudge(_LenBackend(), PROMPTS)
    scorer = LLMJudgeScorer(judge, "relevance", model_fingerprint="sha-len", prices=Prices(RAW), priced_as="api-llm")
    pairs = _pairs(20) + _pairs(5)  # 5 duplicates within one refresh
    with Ledger(tmp_path / "l.sqlite", Prices(RAW)) as led, JudgeCache(tmp_path / "c.sqlite", ledger=led) as cache:
        v1, r1 = cache.refresh(scorer, pairs)
        assert (r1.pairs, r1.unique, r1.calls, r1.hits) == (25, 20, 20, 0) and judge.backend.calls == 20
        v2, r2 = cache.refresh(scorer, pairs)
        assert r2.calls == 0 and judge.backend.calls == 20 and r2.hit_rate == 1.0
        assert [v.label for v in v1] == [v.label for v in v2]
        assert r2.usd_saved == pytest.approx(sum(v.usd for v in v1)) and r2.usd_saved > 0
        s = cache_savings(led)
        assert s["calls_paid"] == 20 and s["calls_saved"] == 5 + 25 and s["usd_saved"] == pytest.approx(r1.usd_saved + r2.usd_saved)


def test_prompt_edit_rescores_exactly_the_pairs_under_that_prompt(tmp_path):
    backend = _LenBackend()
    rel = LLMJudgeScorer(LLMJudge(backend, PROMPTS), "relevance", "sha-len")
    faith = LLMJudgeScorer(LLMJudge(backend, PROMPTS), "faithfulness", "sha-len", fields=("evidence", "claim"))
    a, b = _pairs(30, "a"), _pairs(12, "b")
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        cache.refresh(rel, a)
        cache.refresh(faith, b)
        edited = {**PROMPTS, "tasks": {**PROMPTS["tasks"], "relevance": {**PROMPTS["tasks"]["relevance"],
                                                                         "user": "Query: {query}\nPassage: {passage}"}}}
        rel2 = LLMJudgeScorer(LLMJudge(backend, edited), "relevance", "sha-len")  # edited without a version bump
        assert rel2.spec.prompt_version == rel.spec.prompt_version and rel2.spec.prompt_sha256 != rel.spec.prompt_sha256
        assert cache.refresh(rel2, a)[1].calls == 30
        assert cache.refresh(faith, b)[1].calls == 0
        # invalidation by prompt hash touches only those rows; by model only that model's
        assert cache.invalidate(prompt_sha256=rel.spec.prompt_sha256) == 30
        assert cache.refresh(rel2, a)[1].calls == 0 and cache.refresh(faith, b)[1].calls == 0
        assert cache.invalidate(model_fingerprint="other-model") == 0
        with pytest.raises(ValueError, match="at least one"):
            cache.invalidate()


def test_cross_encoder_teacher_behind_the_contract(tmp_path):
    class Overlap:  # any score_pairs model: word overlap
        name = "overlap"
        max_length = 128

        def __init__(self):
            self.n = 0

        def score_pairs(self, pairs):
            self.n += len(pairs)
            return np.array([len(set(q.split()) & set(d.split())) for q, d in pairs], dtype=np.float32)

    ranker = Overlap()
    teacher = PairScorerJudge(ranker, "sha-overlap", threshold=0.5, prices=Prices(RAW), batch_size=8)
    pairs = [("a b", "a c"), ("a b", "c d"), ("x", "x y")] * 3
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        v, r = cache.refresh(teacher, pairs)
        assert [s.label for s in v[:3]] == [1, 0, 1] and r.calls == 3 and ranker.n == 3
        assert PairScorerJudge(ranker, "sha-overlap", threshold=1.5).spec.key("a", "b") != teacher.spec.key("a", "b")
        assert cache.refresh(teacher, pairs)[1].calls == 0 and ranker.n == 3


def test_refuses_a_file_that_is_not_a_cache(tmp_path):
    p = tmp_path / "other.sqlite"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(JudgeCacheFormatError, match="not a ragfix judge cache"):
        JudgeCache(p)


def test_a_failing_judge_releases_its_reservation(tmp_path):
    class Boom(_CountingScorer):
        def score_batch(self, pairs):
            raise RuntimeError("API down")

    spec = JudgeSpec("relevance", "m")
    with JudgeCache(tmp_path / "c.sqlite", lease_s=3600) as cache:
        with pytest.raises(RuntimeError, match="API down"):
            cache.refresh(Boom(spec), _pairs(3))
        ok = _CountingScorer(spec)
        assert cache.refresh(ok, _pairs(3))[1].calls == 3  # no waiting out an hour's lease


_WRITER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from distill.judge_cache import JudgeCache, JudgeSpec, Scored

    class Billed:
        kind, model, batch_size = "llm", "billed", {batch}
        spec = JudgeSpec("relevance", "m", "v1", "p", {{}})
        def score_batch(self, pairs):
            # the provider's bill: one line per pair, on disk before the verdict comes back
            with open({bill!r}, "a") as fh:
                for q, d in pairs:
                    fh.write(q + "\\t" + d + "\\n")
                fh.flush(); os.fsync(fh.fileno())
            time.sleep({sleep})
            return [Scored(len(q) % 2, None, 1, 1, 0.0, 0.001) for q, d in pairs]
        def ledger_kwargs(self):
            return {{}}

    pairs = [("q%d" % (i % {n}), "doc %d" % (i % {n})) for i in range({start}, {start} + {n})]
    JudgeCache({path!r}).refresh(Billed(), pairs)
    print("done", flush=True)
""")


def _writer(tmp_path, bill, n, start=0, batch=4, sleep=0.0):
    code = _WRITER.format(root=str(ROOT), batch=batch, bill=str(bill), sleep=sleep, n=n, start=start,
                          path=str(tmp_path / "c.sqlite"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _bill(bill):
    return Counter(tuple(l.split("\t")) for l in Path(bill).read_text().splitlines()) if Path(bill).exists() else Counter()


def test_8_concurrent_writer_processes_no_lost_or_duplicated_rows(tmp_path):
    bill = tmp_path / "bill.txt"
    JudgeCache(tmp_path / "c.sqlite").close()
    procs = [_writer(tmp_path, bill, n=120, start=15 * w, batch=4, sleep=0.002) for w in range(8)]  # overlapping sets
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        att = cache.attempts()
        st = cache.stats()
    paid = _bill(bill)
    assert st["done"] == 120 and st["pending"] == 0 and len(att) == 120  # every pair, one row each
    assert set(att.values()) == {1}  # no pair reserved twice
    assert sum(paid.values()) == 120 and set(paid.values()) == {1}  # the judge was paid exactly once per pair


def test_kill_9_mid_refresh_then_resume(tmp_path):
    bill = tmp_path / "bill.txt"
    n, batch = 60, 3
    JudgeCache(tmp_path / "c.sqlite").close()
    committed_before: dict = {}
    paid_at_commit: dict = {}
    spec = JudgeSpec("relevance", "m", "v1", "p", {})
    for want, extra_s in ((4, 0.07), (20, 0.02)):  # kill mid-call of a later batch, twice
        p = _writer(tmp_path, bill, n=n, batch=batch, sleep=0.05)
        deadline = time.monotonic() + 90
        while True:  # poll committed verdicts while the writer runs; all of these must survive the kill
            with JudgeCache(tmp_path / "c.sqlite") as cache:
                snap = {i: v for i, v in enumerate(cache.get(spec, [(f"q{i}", f"doc {i}") for i in range(n)])) if v}
            if len(snap) >= want or time.monotonic() > deadline or p.poll() is not None:
                break
            time.sleep(0.01)
        time.sleep(extra_s)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
        assert snap, "the writer committed nothing before the kill; raise kill_after"
        committed_before.update(snap)
        paid_then = _bill(bill)
        paid_at_commit.update({(f"q{i}", f"doc {i}"): paid_then[(f"q{i}", f"doc {i}")] for i in snap})
        with JudgeCache(tmp_path / "c.sqlite") as cache:
            assert cache.stats()["pending"] <= batch  # at most the batch in flight was reserved, not committed
    # resume in another process: no waiting for the dead writer's lease (its pid is gone)
    r = _writer(tmp_path, bill, n=n, batch=batch)
    out, err = r.communicate(timeout=120)
    assert r.returncode == 0 and "done" in out, err
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        after = cache.get(JudgeSpec("relevance", "m", "v1", "p", {}), [(f"q{i}", f"doc {i}") for i in range(n)])
        att = cache.attempts()
        st = cache.stats()
    assert all(v is not None for v in after) and st["done"] == n and st["pending"] == 0
    assert all(after[i] == v for i, v in committed_before.items())  # no committed verdict lost or changed
    paid = _bill(bill)
    twice = [k for k, c in paid.items() if c > 1]
    assert max(paid.values()) <= 2 and len(twice) <= 2 * batch  # only each kill's in-flight batch was re-paid
    key_of = {(f"q{i}", f"doc {i}"): JudgeSpec("relevance", "m", "v1", "p", {}).key(f"q{i}", f"doc {i}") for i in range(n)}
    assert {k: att[key_of[k]] for k in paid} == dict(paid)  # attempts == what the bill says, pair by pair
    assert all(paid[k] == c for k, c in paid_at_commit.items())  # a committed pair is never charged again
    assert twice  # the kills did land mid-call (else this test proves nothing about the in-flight batch)


@pytest.mark.parametrize("shared", [True, False])
def test_8_threads_one_or_many_cache_objects_pay_each_pair_once(tmp_path, shared):
    spec = JudgeSpec("relevance", "m", "v1", "p", {})
    scorer = _CountingScorer(spec)
    one = JudgeCache(tmp_path / "c.sqlite")
    pairs = _pairs(90)
    errors, results = [], {}
    start = threading.Barrier(8)

    def work(t):
        cache = one if shared else JudgeCache(tmp_path / "c.sqlite")
        start.wait()
        try:
            mine = pairs[t * 5:] + pairs[: t * 5]  # same pairs, different orders
            verdicts, _ = cache.refresh(scorer, mine)
            results[t] = dict(zip(mine, verdicts))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            if not shared:
                cache.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert set(scorer.paid.values()) == {1} and len(scorer.paid) == 90  # each pair paid once, none lost
    assert all(results[t] == results[0] for t in results)  # every thread got the same verdicts
    assert set(one.attempts().values()) == {1} and one.stats()["done"] == 90
    one.close()
