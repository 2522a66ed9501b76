"""``ragfix bench judge-spend``: an eval dashboard refreshed daily for 30 days, judge spend naive vs cached (IV).

Eval-Spend Overrun: every refresh re-asks the judge about pairs it has already judged. The dashboard:
two panels of real pairs, each query with its BM25 top-``k`` candidates (:mod:`data.judge_pairs`) --
SciFact claims under a claim-relevance prompt and NQ-open questions under the project's relevance
prompt (``configs/judge_prompts.yaml``) -- ``--queries`` queries per panel on day 0. Every day
``--new-share`` of the day-0 pair count arrives as new queries (whole top-``k`` lists, split evenly
between panels); on ``--edit-day`` the NQ panel's prompt is edited (new text, new version). Each day
the dashboard is refreshed once:

- **naive**: every pair on the dashboard is judged again (calls = pairs on the dashboard that day);
- **cached**: :class:`distill.judge_cache.JudgeCache` -- only pairs whose key (model fingerprint,
  prompt version + template hash, decoding, query, document) has no verdict are judged.

What is real and what is modelled:

- **Real judge calls** (``--sample`` pairs, half per panel, seeded, from day 0): SmolLM2-135M
  (``registry.load_llm``) through :class:`distill.judge.LLMJudge` and a real ``JudgeCache`` with a
  :class:`distill.ledger.Ledger`: the day-0 refresh (paid), the same refresh again (``real.unchanged_calls``,
  must be 0) and the prompt edit (``real.edit_calls``: the NQ half re-judged, the SciFact half not).
  Their measured tokens per call, verdicts' parse rate and seconds are reported.
- **The 30-day simulation** runs the *same* ``JudgeCache`` code (a separate SQLite file) over every
  pair with a token-model scorer: call counts are exact (they depend only on the keys), dollars are
  each pair's exact prompt tokens (SmolLM2's tokenizer and chat template, the prompt the judge would
  send) plus the mean completion tokens measured on the real sample, priced as ``--price-as``
  in ``configs/prices.yaml`` (``registry.load_prices``). Verdict labels are not simulated.

JSON keys: ``metrics.naive.calls`` / ``.usd``, ``metrics.cached.calls`` / ``.usd``, ``metrics.ratio_calls``,
``metrics.unchanged_refresh.calls`` (a second refresh of the last day), ``metrics.prompt_edit.rescored``
(edit-day misses among the pairs that were on the edited panel the day before) and
``.pairs_under_prompt`` (how many such pairs there were), ``.rescored_other_prompt`` (misses among the
other panel's old pairs: 0), ``metrics.per_day`` and ``metrics.ledger`` (:func:`distill.judge_cache.cache_savings`
of the simulation's ledger; a ledger row holds whole completion tokens, so its USD prices the rounded mean and
differs from ``metrics.cached.usd`` by that rounding). A PNG of cumulative USD (naive vs cached) is written beside ``--out``.

Leaves out: judges other than SmolLM2 run for real (an API judge is priced, not called), verdict drift
between refreshes (a deterministic greedy judge is assumed; a sampled judge belongs in the key's decoding).
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["add_parser", "run_judge_spend", "markdown", "TokenModelScorer", "dashboard_days"]

SCIFACT_PROMPT = {
    "system": "You judge whether a scientific abstract is relevant to a claim. Reply with one word: yes or no.",
    "user": "Claim: {query}\n\nAbstract: {passage}\n\nIs the abstract relevant to the claim? Answer yes or no.",
    "answers": {"yes": 1, "no": 0},
    "max_new_tokens": 3,
}
NQ_EDIT_USER = "Question: {query}\n\nPassage: {passage}\n\nDoes the passage answer the question? Answer yes or no."


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("judge-spend", help="IV: 30 daily dashboard refreshes, judge spend naive vs cached")
    p.add_argument("--out", required=True, help="results JSON (Markdown and PNG beside it)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--queries", type=int, default=300, help="queries per panel on day 0")
    p.add_argument("--top-k", type=int, default=10, help="candidates per query")
    p.add_argument("--new-share", type=float, default=0.05, help="new pairs per day, as a share of the day-0 pairs")
    p.add_argument("--edit-day", type=int, default=15, help="day the NQ panel's prompt is edited")
    p.add_argument("--sample", type=int, default=24, help="pairs judged for real by the LLM (half per panel)")
    p.add_argument("--judge", default="smollm2", help="registry LLM name of the judge")
    p.add_argument("--price-as", default="gpt-4o-mini", help="prices.yaml llms entry the tokens are priced as")
    p.add_argument("--max-chars", type=int, default=1500, help="documents cut to this many characters")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd)


def _check_args(a: argparse.Namespace) -> None:
    if a.days < 2:
        raise ValueError(f"--days must be >= 2, got {a.days}")
    if not (0 < a.edit_day < a.days):
        raise ValueError(f"--edit-day must be in 1..{a.days - 1} (--days {a.days}), got {a.edit_day}")
    if not (0.0 <= a.new_share <= 1.0):
        raise ValueError(f"--new-share must be in [0, 1], got {a.new_share}")
    if a.queries < 2 or a.top_k < 1 or a.sample < 2:
        raise ValueError(f"need --queries >= 2, --top-k >= 1, --sample >= 2; got {a.queries}, {a.top_k}, {a.sample}")
    if not a.out.endswith(".json"):
        raise ValueError(f"--out must name a .json file, got {a.out!r}")


def _cmd(args: argparse.Namespace) -> int:
    _check_args(args)
    from registry import load_prices

    from distill.ledger import PriceMissingError

    prices = load_prices()
    try:
        prices.token_cost(args.price_as, 0, 0)  # checked before any work or file
    except PriceMissingError as exc:
        raise ValueError(f"--price-as: {exc}") from None
    doc = run_judge_spend(**{k: getattr(args, k) for k in ("out", "days", "queries", "top_k", "new_share", "edit_day",
                                                            "sample", "judge", "price_as", "max_chars", "seed")})
    m = doc["metrics"]
    print(f"naive {m['naive']['calls']} calls ${m['naive']['usd']:.4f} -> cached {m['cached']['calls']} calls "
          f"${m['cached']['usd']:.4f} (ratio {m['ratio_calls']:.4f}); unchanged refresh {m['unchanged_refresh']['calls']} calls; "
          f"prompt edit re-scored {m['prompt_edit']['rescored']}/{m['prompt_edit']['pairs_under_prompt']}; wrote {args.out}")
    return 0


class TokenModelScorer:
    """The judge contract without calling the LLM: exact prompt tokens, measured mean completion tokens, priced.

    Shares the real scorer's :class:`~distill.judge_cache.JudgeSpec`, so its cache keys are the real ones.
    """

    kind = "llm"
    batch_size = 500

    def __init__(self, real, tokens_in_of, tokens_out: float, prices, priced_as: str) -> None:
        self.spec, self.model = real.spec, real.model
        self.tokens_in_of, self.tokens_out, self.prices, self.priced_as = tokens_in_of, float(tokens_out), prices, priced_as

    def score_batch(self, pairs):
        from distill.judge_cache import Scored

        out = []
        for q, d in pairs:
            tin = self.tokens_in_of(self.spec, q, d)
            out.append(Scored(None, None, tin, round(self.tokens_out), 0.0, self.prices.token_cost(self.priced_as, tin, self.tokens_out)))
        return out

    def ledger_kwargs(self) -> dict:
        return {"pricing": "tokens", "priced_as": self.priced_as}


def dashboard_days(panels: dict, queries: int, days: int, new_share: float, k: int) -> list[dict[str, int]]:
    """Queries per panel on each day: ``queries`` on day 0, plus ``new_share`` of the day-0 pairs a day (whole queries)."""
    per_day_pairs = new_share * queries * len(panels) * k
    new_q = per_day_pairs / k / len(panels)
    out, acc = [], 0.0
    for d in range(days):
        n = queries + int(round(acc))
        for name, qs in panels.items():
            if n > len(qs):
                raise ValueError(f"panel {name}: day {d} needs {n} queries, the data has {len(qs)}; lower --queries, "
                                 "--new-share or --days")
        out.append({name: n for name in panels})
        acc += new_q
    return out


def run_judge_spend(out: str, days: int = 30, queries: int = 300, top_k: int = 10, new_share: float = 0.05,
                    edit_day: int = 15, sample: int = 24, judge: str = "smollm2", price_as: str = "gpt-4o-mini",
                    max_chars: int = 1500, seed: int = 0) -> dict:
    """Run the simulation and the real sample; write ``out`` (JSON), ``.md`` and ``.png``; return the results doc."""
    from bench.report import write_results
    from data.judge_pairs import nq_candidates, scifact_candidates
    from distill.judge import LLMJudge
    from distill.judge_cache import JudgeCache, LLMJudgeScorer, cache_savings
    from distill.ledger import Ledger
    from registry import load_judge_prompts, load_llm, load_prices, resolved_models

    t_start = time.time()
    prices = load_prices()
    prompts = load_judge_prompts()
    panels = {"scifact": scifact_candidates(None, top_k, seed, max_chars), "nq": nq_candidates(None, top_k, seed, max_chars)}
    schedule = dashboard_days(panels, queries, days, new_share, top_k)

    backend = load_llm(judge)
    fp = resolved_models()[judge].get("sha256") or judge
    sci_prompts = {"version": f"{prompts['version']}+scifact-claim", "tasks": {**prompts["tasks"], "relevance": SCIFACT_PROMPT}}
    nq_edited = {"version": f"{prompts['version']}+edit1",
                 "tasks": {**prompts["tasks"], "relevance": {**prompts["tasks"]["relevance"], "user": NQ_EDIT_USER}}}
    judges = {"scifact": LLMJudge(backend, sci_prompts), "nq": LLMJudge(backend, prompts), "nq_edit": LLMJudge(backend, nq_edited)}

    out_p = Path(out)
    out_p.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_p.parent, prefix=f".{out_p.stem}-"))
    try:
        led_real = Ledger(work / "real-ledger.sqlite", prices)
        real_cache = JudgeCache(work / "real-cache.sqlite", ledger=led_real)
        scorers = {n: LLMJudgeScorer(j, "relevance", fp, prices=prices, priced_as=price_as) for n, j in judges.items()}

        # -- the real sample ------------------------------------------------------------------------
        rng = random.Random(seed)
        samp = {}
        for name in ("scifact", "nq"):
            day0 = [(q.query, d) for q in panels[name][:queries] for d in q.docs]
            samp[name] = rng.sample(day0, sample // 2)
        t0 = time.perf_counter()
        real_day0 = {n: real_cache.refresh(scorers[n], samp[n]) for n in ("scifact", "nq")}
        real_wall = time.perf_counter() - t0
        real_again = {n: real_cache.refresh(scorers[n], samp[n])[1].calls for n in ("scifact", "nq")}
        real_edit = {"nq": real_cache.refresh(scorers["nq_edit"], samp["nq"])[1].calls,
                     "scifact": real_cache.refresh(scorers["scifact"], samp["scifact"])[1].calls}
        rows = [r for r in led_real.rows() if r["kind"] == "llm"]
        verdicts = [v for n in ("scifact", "nq") for v in real_day0[n][0]]
        tokens_out = sum(r["tokens_out"] for r in rows) / len(rows)
        real = {"pairs": 2 * (sample // 2), "calls_day0": sum(r.calls for _, r in real_day0.values()),
                "unchanged_calls": sum(real_again.values()), "edit_calls": real_edit,
                "calls_total": len(rows), "tokens_in_per_call": sum(r["tokens_in"] for r in rows) / len(rows),
                "tokens_out_per_call": tokens_out, "wall_s_per_call": real_wall / max(1, len(verdicts)),
                "usd_per_call": sum(r["cost_usd"] for r in rows) / len(rows),
                "parsed_share": sum(v.label is not None for v in verdicts) / len(verdicts),
                "yes_share": sum(v.label == 1 for v in verdicts) / len(verdicts),
                "ledger": cache_savings(led_real)}
        real_cache.close()
        led_real.close()

        # -- the 30-day simulation ------------------------------------------------------------------
        tok_cache: dict[tuple, int] = {}
        by_prompt = {(s.spec.prompt_version, s.spec.prompt_sha256): n for n, s in scorers.items()}

        def tokens_in_of(spec, q, d):
            name = by_prompt[(spec.prompt_version, spec.prompt_sha256)]
            key = (name, q, d)
            if key not in tok_cache:
                tok_cache[key] = len(backend.encode_prompt(judges[name].messages("relevance", query=q, passage=d)))
            return tok_cache[key]

        # the token model against the real calls, pair by pair (same prompt, same tokenizer: should be equal)
        check = [(v.tokens_in, tokens_in_of(scorers[n].spec, *p)) for n in ("scifact", "nq")
                 for p, v in zip(samp[n], real_day0[n][0])]
        led = Ledger(work / "sim-ledger.sqlite", prices)
        cache = JudgeCache(work / "sim-cache.sqlite", ledger=led)
        sims = {n: TokenModelScorer(s, tokens_in_of, tokens_out, prices, price_as) for n, s in scorers.items()}
        per_day, prev = [], {}
        edit_stats = {}
        for d in range(days):
            day_pairs, day_naive_usd, day_calls, day_usd, day_hits = 0, 0.0, 0, 0.0, 0
            for name in ("scifact", "nq"):
                pairs = [(q.query, doc) for q in panels[name][:schedule[d][name]] for doc in q.docs]
                sc = sims["nq_edit" if (name == "nq" and d >= edit_day) else name]
                if d == edit_day:  # which of yesterday's pairs have no verdict under today's prompt: re-scored now
                    old = list(dict.fromkeys(prev[name]))
                    missing = sum(v is None for v in cache.get(sc.spec, old))
                verdicts_d, rep = cache.refresh(sc, pairs)
                if d == edit_day:
                    new = len(set(pairs) - set(old))
                    edit_stats[name] = {"old_pairs": len(old), "misses_on_old_pairs": missing,
                                        "calls": rep.calls, "new_pairs": new}
                day_pairs += len(pairs)
                day_naive_usd += sum(v.usd for v in verdicts_d)
                day_calls += rep.calls
                day_usd += rep.usd_paid
                day_hits += rep.hits
            prev = {name: [(q.query, doc) for q in panels[name][:schedule[d][name]] for doc in q.docs] for name in ("scifact", "nq")}
            per_day.append({"day": d, "pairs": day_pairs, "naive_calls": day_pairs, "naive_usd": day_naive_usd,
                            "cached_calls": day_calls, "cached_usd": day_usd, "hits": day_hits})
        last = [(q.query, doc) for q in panels["nq"][:schedule[-1]["nq"]] for doc in q.docs]
        last_sci = [(q.query, doc) for q in panels["scifact"][:schedule[-1]["scifact"]] for doc in q.docs]
        unchanged = cache.refresh(sims["nq_edit"], last)[1].calls + cache.refresh(sims["scifact"], last_sci)[1].calls
        sim_ledger = cache_savings(led)
        cache.close()
        led.close()

        naive_calls = sum(r["naive_calls"] for r in per_day)
        cached_calls = sum(r["cached_calls"] for r in per_day)
        metrics = {
            "naive": {"calls": naive_calls, "usd": sum(r["naive_usd"] for r in per_day)},
            "cached": {"calls": cached_calls, "usd": sum(r["cached_usd"] for r in per_day)},
            "ratio_calls": cached_calls / naive_calls,
            "unchanged_refresh": {"calls": unchanged, "pairs": len(last) + len(last_sci)},
            "prompt_edit": {"day": edit_day, "panel": "nq", "rescored": edit_stats["nq"]["misses_on_old_pairs"],
                            "pairs_under_prompt": edit_stats["nq"]["old_pairs"],
                            "rescored_other_prompt": edit_stats["scifact"]["misses_on_old_pairs"],
                            "pairs_under_other_prompt": edit_stats["scifact"]["old_pairs"],
                            "calls_on_edit_day": {n: e["calls"] for n, e in edit_stats.items()},
                            "new_pairs_on_edit_day": {n: e["new_pairs"] for n, e in edit_stats.items()}},
            "pairs_day0": per_day[0]["pairs"], "pairs_last_day": per_day[-1]["pairs"],
            "new_pairs_per_day": (per_day[-1]["pairs"] - per_day[0]["pairs"]) / (days - 1),
            "tokens_in_model_check": {"pairs": len(check), "exact": sum(a == b for a, b in check),
                                      "real_mean": sum(a for a, _ in check) / len(check),
                                      "modelled_mean": sum(b for _, b in check) / len(check)},
            "real": real, "ledger": sim_ledger, "per_day": per_day,
        }
        png = out_p.with_suffix(".png")
        _plot(per_day, png, price_as, edit_day)
        config = {"days": days, "queries_per_panel_day0": queries, "top_k": top_k, "new_share": new_share,
                  "edit_day": edit_day, "sample": sample, "judge": judge, "judge_fingerprint": fp, "price_as": price_as,
                  "max_chars": max_chars, "seed": seed, "prompt_versions": {"scifact": sci_prompts["version"],
                  "nq": prompts["version"], "nq_after_edit": nq_edited["version"]},
                  "model_of_the_rest": "call counts exact (same JudgeCache, same keys); USD = exact prompt tokens of each "
                                       "pair + mean measured completion tokens, priced as price_as",
                  "wall_s": round(time.time() - t_start, 1)}
        doc = write_results(out_p, config, metrics, markdown(config, metrics), plot=str(png))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return doc


def _plot(per_day: list[dict], png: Path, price_as: str, edit_day: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    days = [r["day"] for r in per_day]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(days, np.cumsum([r["naive_usd"] for r in per_day]), label="naive (re-judge every pair)")
    ax.plot(days, np.cumsum([r["cached_usd"] for r in per_day]), label="JudgeCache")
    ax.axvline(edit_day, color="grey", ls=":", lw=1, label=f"prompt edit (day {edit_day})")
    ax.set_xlabel("day")
    ax.set_ylabel(f"cumulative judge spend, USD (as {price_as})")
    ax.legend()
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)


def markdown(config: dict, m: dict) -> str:
    from bench.report import markdown_table

    rows = [{"refresh policy": "naive", "judge calls": m["naive"]["calls"], "USD": m["naive"]["usd"]},
            {"refresh policy": "JudgeCache", "judge calls": m["cached"]["calls"], "USD": m["cached"]["usd"]}]
    pe = m["prompt_edit"]
    r = m["real"]
    return (f"# Judge spend over {config['days']} daily refreshes\n\n"
            f"{config['queries_per_panel_day0']} queries x top-{config['top_k']} per panel (SciFact, NQ-open) on day 0, "
            f"{config['new_share']:.0%} new pairs a day, NQ prompt edited on day {pe['day']}; priced as {config['price_as']}.\n\n"
            + markdown_table(rows, ["refresh policy", "judge calls", "USD"], floatfmt=".4f")
            + f"\nCached / naive calls: {m['ratio_calls']:.4f}. Unchanged refresh: {m['unchanged_refresh']['calls']} calls "
            f"for {m['unchanged_refresh']['pairs']} pairs. Prompt edit: {pe['rescored']} of {pe['pairs_under_prompt']} pairs "
            f"under the edited prompt re-scored, {pe['rescored_other_prompt']} of {pe['pairs_under_other_prompt']} under the other.\n\n"
            f"Real SmolLM2 calls on {r['pairs']} sampled pairs: {r['calls_day0']} paid on day 0, {r['unchanged_calls']} on the "
            f"unchanged refresh, {r['edit_calls']} after the edit; {r['tokens_in_per_call']:.0f} tokens in, "
            f"{r['tokens_out_per_call']:.1f} out, {r['wall_s_per_call']:.2f} s per call; parsed {r['parsed_share']:.0%}.\n")
