"""``ragfix bench serve``: a load test of ``ragfix serve`` on loopback, naive server beside the fixed one.

Failure mode VIII (Reranker on the Request Path) under concurrent load. Two server processes run
the same reranker: **naive** (``--naive``: per-request scoring on a thread pool, unbounded queue,
no deadline) and **fixed** (cross-request micro-batching, bounded admission with 429/503 +
``Retry-After``, per-request deadlines). The load generator is one asyncio process (httpx) that
sends real SciFact requests (each claim with its BM25 top-k abstracts, the ``/v1/rerank`` TEI shape):

* closed loop at each ``--concurrency`` level for ``--duration`` seconds (a refused client waits
  its ``Retry-After`` before the next request, as a well-behaved client does): p50/p95/p99 latency of
  accepted requests, answered requests/s, ``ok`` / ``rejected`` (429 or 503 carrying
  ``Retry-After``) / ``errors`` (5xx, a refusal without ``Retry-After``, a transport error or a
  client timeout), and requests and pairs per forward pass read from the server's ``/metrics``;
* ``capacity_rps``: the fixed server's best closed-loop rate;
* ``overload``: open loop at twice ``capacity_rps`` (evenly spaced arrivals for ``--duration``
  seconds) against both servers, with the p99 of the first and the second half of the arrivals
  (growing for the naive server, flat for the fixed one).

The load generator shares the machine's cores with the server: on a small machine it takes CPU
from the server and the absolute numbers are lower than a separate client would measure.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.cli.argtypes import positive_float, positive_int

__all__ = ["add_parser", "run_serve_bench", "markdown", "plot"]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("naive", "fixed")


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--concurrency {text!r}: give comma-separated positive integers, e.g. 1,8,32,64") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"--concurrency {text!r}: give comma-separated positive integers, e.g. 1,8,32,64")
    return levels


class _Server:
    """One ``python -m serve`` subprocess on a free loopback port."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        cmd = [sys.executable, "-m", "serve", "--port", "0", "--model", args.model, "--backend", args.backend,
               "--max-queue", str(args.max_queue), "--deadline-ms", str(args.deadline_ms)]
        cmd += ["--torch-threads", str(args.torch_threads)]
        if name == "naive":
            cmd += ["--naive", "--naive-threads", str(args.naive_threads)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.url: str | None = None
        self._found = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if m and self.url is None:
                self.url = m.group(1)
                self._found.set()

    def wait_ready(self, timeout: float = 180.0) -> None:
        import httpx

        t_end = time.monotonic() + timeout
        if not self._found.wait(timeout) or self.url is None:
            raise RuntimeError(f"{self.name} server did not start:\n" + "".join(self.lines[-20:]))
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited:\n" + "".join(self.lines[-20:]))
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} server not ready within {timeout:.0f} s:\n" + "".join(self.lines[-20:]))

    def stop(self) -> int | None:
        """SIGTERM (drain), then wait; kill if it has not exited in 60 s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(10)
        return self.proc.returncode


def _scrape(url: str) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for s in fam.samples:
            if s.name in ("ragfix_serve_batch_requests_sum", "ragfix_serve_batch_requests_count",
                          "ragfix_serve_batch_pairs_sum", "ragfix_serve_batch_pairs_count"):
                out[s.name] = s.value
    return out


def _batch_stats(before: dict, after: dict) -> dict:
    def mean(key: str) -> float | None:
        n = after.get(f"{key}_count", 0.0) - before.get(f"{key}_count", 0.0)
        return None if n <= 0 else (after.get(f"{key}_sum", 0.0) - before.get(f"{key}_sum", 0.0)) / n

    return {"requests_per_pass": mean("ragfix_serve_batch_requests"), "pairs_per_pass": mean("ragfix_serve_batch_pairs")}


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def _summarise(records: list[tuple[float, float, str]], wall: float) -> dict:
    """records: (start offset s, latency s, outcome in ok/rejected/errors)."""
    ok = [lat * 1000 for _, lat, o in records if o == "ok"]
    counts = {k: sum(1 for r in records if r[2] == k) for k in ("ok", "rejected", "errors")}
    return {"p50_ms": _pct(ok, 50), "p95_ms": _pct(ok, 95), "p99_ms": _pct(ok, 99), "rps": counts["ok"] / wall if wall > 0 else 0.0,
            **counts, "sent": len(records), "wall_s": wall}


async def _one(client, url: str, body: dict, timeout: float) -> tuple[str, float]:
    """(outcome, Retry-After seconds or 0)."""
    import httpx

    try:
        r = await client.post(url + "/v1/rerank", json=body, timeout=timeout)
    except httpx.HTTPError:
        return "errors", 0.0
    if r.status_code == 200:
        return "ok", 0.0
    retry = r.headers.get("retry-after", "")
    if r.status_code in (429, 503) and retry.isdigit():
        return "rejected", float(retry)
    return "errors", 0.0


async def _closed_loop(url: str, bodies: list[dict], concurrency: int, duration: float, timeout: float) -> dict:
    import httpx

    records: list[tuple[float, float, str]] = []
    counter = iter(range(10**9))
    t0 = time.perf_counter()
    stop_at = t0 + duration

    async def worker(client) -> None:
        while time.perf_counter() < stop_at:
            i = next(counter)
            s = time.perf_counter()
            outcome, retry = await _one(client, url, bodies[i % len(bodies)], timeout)
            records.append((s - t0, time.perf_counter() - s, outcome))
            if retry:  # a well-behaved client honours Retry-After (within the run's time)
                await asyncio.sleep(max(0.0, min(retry, stop_at - time.perf_counter())))

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return _summarise(records, time.perf_counter() - t0)


async def _open_loop(url: str, bodies: list[dict], rate: float, duration: float, timeout: float) -> dict:
    import httpx

    n = max(1, int(round(rate * duration)))
    records: list[tuple[float, float, str]] = []
    t0 = time.perf_counter()

    async def one(i: int, client) -> None:
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        s = time.perf_counter()
        outcome, _ = await _one(client, url, bodies[i % len(bodies)], timeout)
        records.append((s - t0, time.perf_counter() - s, outcome))

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=n + 4, max_keepalive_connections=64)) as client:
        await asyncio.gather(*(one(i, client) for i in range(n)))
    out = _summarise(records, time.perf_counter() - t0)
    half = duration / 2
    out["rate_rps"] = rate
    out["p99_first_half_ms"] = _pct([lat * 1000 for s, lat, o in records if o == "ok" and s < half], 99)
    out["p99_second_half_ms"] = _pct([lat * 1000 for s, lat, o in records if o == "ok" and s >= half], 99)
    return out


def _requests(args: argparse.Namespace) -> list[dict]:
    from data import load_beir
    from retrieval.retrievers import BM25Retriever

    ds = load_beir(args.data, "test").limit(args.limit)
    queries = [ds.queries[q] for q in ds.queries]
    res = BM25Retriever().index(ds.corpus).search(queries, args.k)
    return [{"query": q, "texts": [ds.corpus[int(j)].full_text()[: args.max_chars] for j in res.indices[i] if j >= 0]}
            for i, q in enumerate(queries)]


def run_serve_bench(args: argparse.Namespace) -> dict:
    """Start both servers, run the closed-loop sweep, the overload, stop both with SIGTERM; return the results."""
    import httpx

    bodies = _requests(args)
    log.info(f"{len(bodies)} SciFact requests, {args.k} BM25 passages each")
    servers = {name: _Server(name, args) for name in SERVERS}
    metrics: dict = {name: {} for name in SERVERS}
    exit_codes: dict = {}
    try:
        for s in servers.values():
            s.wait_ready()
            for b in bodies[:3]:  # warm-up
                httpx.post(s.url + "/v1/rerank", json=b, timeout=args.timeout)  # type: ignore[operator]
        for c in args.concurrency:
            for name in SERVERS:  # the same level for both before moving on: drift on the machine hits both
                s = servers[name]
                before = _scrape(s.url)  # type: ignore[arg-type]
                log.info(f"{name} at concurrency {c} for {args.duration:.0f} s ...")
                m = asyncio.run(_closed_loop(s.url, bodies, c, args.duration, args.timeout))  # type: ignore[arg-type]
                m.update(_batch_stats(before, _scrape(s.url)))  # type: ignore[arg-type]
                metrics[name][str(c)] = m
        capacity_level = max(args.concurrency, key=lambda c: metrics["fixed"][str(c)]["rps"])
        capacity = metrics["fixed"][str(capacity_level)]["rps"]
        for name in SERVERS:
            s = servers[name]
            before = _scrape(s.url)  # type: ignore[arg-type]
            log.info(f"{name} overload: open loop at {2 * capacity:.1f} req/s for {args.duration:.0f} s ...")
            m = asyncio.run(_open_loop(s.url, bodies, 2 * capacity, args.duration, args.timeout))  # type: ignore[arg-type]
            m.update(_batch_stats(before, _scrape(s.url)))  # type: ignore[arg-type]
            metrics[name]["overload"] = m
    finally:
        for name, s in servers.items():
            exit_codes[name] = s.stop()
    fixed, naive = metrics["fixed"], metrics["naive"]
    at_cap = fixed[str(capacity_level)]["p99_ms"]
    up_to = [str(c) for c in args.concurrency if c <= capacity_level]

    def ratio(a, b):
        return None if a is None or not b else a / b

    checks = {
        "capacity_concurrency": capacity_level,
        "fixed_errors_up_to_capacity": sum(fixed[c]["errors"] for c in up_to),
        "fixed_errors_all_levels": sum(fixed[str(c)]["errors"] for c in args.concurrency) + fixed["overload"]["errors"],
        "fixed_overload_p99_over_capacity_p99": ratio(fixed["overload"]["p99_ms"], at_cap),
        "naive_overload_p99_over_fixed_capacity_p99": ratio(naive["overload"]["p99_ms"], at_cap),
        "naive_overload_p99_second_over_first_half": ratio(naive["overload"]["p99_second_half_ms"], naive["overload"]["p99_first_half_ms"]),
        "fixed_overload_p99_second_over_first_half": ratio(fixed["overload"]["p99_second_half_ms"], fixed["overload"]["p99_first_half_ms"]),
    }
    if "32" in fixed:
        checks["microbatch_rps_ratio_c32"] = ratio(fixed["32"]["rps"], naive["32"]["rps"])
    config = {k: getattr(args, k) for k in ("data", "model", "backend", "k", "max_chars", "limit", "duration", "max_queue",
                                            "deadline_ms", "torch_threads", "naive_threads", "timeout")}
    config["concurrency"] = list(args.concurrency)
    return {"config": config, "metrics": metrics, "capacity_rps": capacity, "checks": checks, "server_exit_codes": exit_codes,
            "requests": len(bodies), "cpu_count": os.cpu_count(),
            "note": "load generator and servers share this machine's cores; absolute rates are lower than a separate client would see"}


def markdown(r: dict, command: str) -> str:
    def f(x, fmt=".0f"):
        return "—" if x is None else format(x, fmt)

    lines = [f"`{command}`", "", f"capacity (fixed, best closed-loop rate): {r['capacity_rps']:.1f} req/s; overload = open loop at "
             f"{2 * r['capacity_rps']:.1f} req/s", "",
             "| server | load | p50 ms | p95 ms | p99 ms | req/s | ok | rejected | errors | requests/pass | pairs/pass |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in SERVERS:
        for level, m in r["metrics"][name].items():
            lines.append(f"| {name} | {level} | {f(m['p50_ms'])} | {f(m['p95_ms'])} | {f(m['p99_ms'])} | {m['rps']:.1f} | {m['ok']} | "
                         f"{m['rejected']} | {m['errors']} | {f(m['requests_per_pass'], '.2f')} | {f(m['pairs_per_pass'], '.1f')} |")
    lines += ["", "checks: " + ", ".join(f"{k}={f(v, '.2f') if isinstance(v, float) else v}" for k, v in r["checks"].items()), ""]
    return "\n".join(lines)


def plot(r: dict, out: Path | str) -> Path:
    """p99 latency of accepted requests and answered req/s per load level, naive beside fixed, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(r["metrics"]["fixed"])
    x = np.arange(len(levels))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, name in enumerate(SERVERS):
        m = r["metrics"][name]
        a.bar(x + (i - 0.5) * 0.38, [(m[k]["p99_ms"] or 0) / 1000 for k in levels], 0.38, label=name)
        b.bar(x + (i - 0.5) * 0.38, [m[k]["rps"] for k in levels], 0.38, label=name)
    names = [k if k != "overload" else f"2x cap\n({2 * r['capacity_rps']:.1f}/s)" for k in levels]
    for ax, title in ((a, "p99 latency of accepted requests (s)"), (b, "answered requests/s")):
        ax.set_xticks(x, names)
        ax.set_xlabel("concurrent clients (closed loop) / open-loop rate")
        ax.set_title(title, fontsize=10)
        ax.legend()
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cmd(args: argparse.Namespace) -> int:
    import shlex

    from bench.report import check_output_path, write_results

    out = check_output_path(args.out, make_parent=True)
    if (args.warm_prefix or args.warm_prefix_only) and args.warm_prefix_n < 2:
        print(f"ragfix bench serve: error: --warm-prefix-n {args.warm_prefix_n}: a paired interval needs at least 2 prompts", file=sys.stderr)
        return 2
    if args.warm_prefix or args.warm_prefix_only:
        from generate.llama_server import llama_cpp_available

        if not llama_cpp_available():
            print("ragfix bench serve: error: --warm-prefix needs llama-cpp-python[server]; build it with `make llama`", file=sys.stderr)
            return 2
    command = "ragfix " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if not args.warm_prefix_only:
        from registry import Registry

        # The servers load the model in subprocesses; resolving it here puts its weights' hash in the results file.
        Registry().resolve(args.model, "cross-encoder")
    r = {"config": {}, "metrics": {}} if args.warm_prefix_only else run_serve_bench(args)
    if args.warm_prefix or args.warm_prefix_only:
        from bench.benchmarks.bench_warm_prefix import run_warm_prefix

        r["warm_prefix"] = run_warm_prefix(args.data, n=args.warm_prefix_n, k=args.warm_prefix_k, threads=args.torch_threads)
        r["config"].update(warm_prefix_n=args.warm_prefix_n, warm_prefix_k=args.warm_prefix_k)
    md = markdown(r, command) if r["metrics"] else f"`{command}`\n"
    if "warm_prefix" in r:
        w = r["warm_prefix"]
        c = w["server_counters"]
        md += (f"\nwarm prefix (llama.cpp server, {w['n']} SciFact prompts, paired): TTFT saving {w['ttft_saving_ms']:.0f} ms "
               f"(95% CI {w['ci95'][0]:.0f} to {w['ci95'][1]:.0f}); cold p50 {w['cold_ttft_ms']['p50']:.0f} ms, warm p50 "
               f"{w['warm_ttft_ms']['p50']:.0f} ms; server-reported prompt-cache hit rate warm {c['warm']['hit_rate']:.2f}, "
               f"cold {c['cold']['hit_rate']:.2f}\n")
    write_results(out, r["config"], r["metrics"], markdown=md, **{k: v for k, v in r.items() if k not in ("metrics", "config")})
    if r["metrics"]:
        plot(r, out.with_suffix(".png"))
    print(md)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from data import data_root

    p = sub.add_parser("serve", help="load test of ragfix serve on loopback: naive vs fixed server, closed loop + 2x capacity (VIII)")
    p.add_argument("--data", default=str(data_root() / "scifact"), help="BEIR-layout folder (test split)")
    p.add_argument("--model", default="reranker-l6", help="registry name or folder (reranker-l2 is ~3x cheaper per pair)")
    from rerank.backends import BACKENDS

    p.add_argument("--backend", default="fp32", choices=list(BACKENDS))
    p.add_argument("--k", type=positive_int, default=10, help="BM25 passages per request")
    p.add_argument("--max-chars", type=positive_int, default=600, help="characters kept per passage")
    p.add_argument("--limit", type=positive_int, default=200, help="SciFact test claims to draw requests from")
    p.add_argument("--concurrency", type=_levels, default=_levels("1,8,32,64"))
    p.add_argument("--duration", type=positive_float, default=10.0, help="seconds per level (and for the overload)")
    p.add_argument("--max-queue", type=positive_int, default=64, help="the fixed server's admission bound")
    p.add_argument("--deadline-ms", type=positive_float, default=10000.0, help="the fixed server's default deadline")
    p.add_argument("--torch-threads", type=positive_int, default=1,
                   help="torch threads per scoring thread in both servers (more than one spins on a shared, busy machine)")
    p.add_argument("--naive-threads", type=positive_int, default=1,
                   help="the naive server's per-request scoring threads; 1 gives both servers the same compute threads, "
                        "so the comparison measures batching, not a larger share of a shared machine")
    p.add_argument("--timeout", type=positive_float, default=120.0, help="client timeout per request (a timeout counts as an error)")
    p.add_argument("--warm-prefix", action="store_true",
                   help="also measure TTFT cold vs with a warmed declared prefix against a real llama.cpp server (needs `make llama`)")
    p.add_argument("--warm-prefix-only", action="store_true", help="only the warm-prefix measurement (no load test)")
    p.add_argument("--warm-prefix-n", type=positive_int, default=30, help="paired prompts for --warm-prefix")
    p.add_argument("--warm-prefix-k", type=positive_int, default=3, help="BM25 passages in each --warm-prefix prompt (the hot documents)")
    p.add_argument("--out", default="results/serve.json")
    p.set_defaults(func=_cmd)
