"""Train the cross-encoder faithfulness model (issue 22): ``python -m bench.cli.train_faithfulness_ce --out DIR``.

Builds the pairs of :func:`data.faithfulness_ce.build_ce_pairs` (HaluEval train rows of the chosen
tasks, length-matched, plus hard cases), fine-tunes a CrossEncoder with
:func:`rerank.train.train_cross_encoder` (pointwise BCE, bf16 autocast, restartable, stopped by a
wall-clock budget), and writes ``DIR/final`` with a ``training.json`` (recipe, pair counts, steps
done) that :class:`cascade.faithfulness.FaithfulnessScorer` reads. Leave-one-task-out runs pass
``--tasks`` with two of the three tasks.

Bad input (an unknown task, a non-positive number) exits 2 with a message and writes nothing.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bench.cli.argtypes import positive_int

__all__ = ["main", "train_faithfulness_ce", "publish"]

TASKS = ("qa", "dialogue", "summarization")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _tasks(text: str) -> tuple[str, ...]:
    if text.strip() == "none":
        return ()
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad:
        raise argparse.ArgumentTypeError(f"--tasks takes a comma list of {', '.join(TASKS)}; got {text!r}")
    return tasks


def _init_tasks(init: str | None) -> list[str]:
    """HaluEval tasks the ``init`` model's weights have already seen (its ``training.json``; none for other models)."""
    meta = Path(init) / "training.json" if init else None
    if meta is None or not meta.is_file():
        return []
    return list(json.loads(meta.read_text()).get("recipe", {}).get("tasks", []))


def extra_pairs(nq_rows: int = 0, scifact_pairs: int = 0, replay: str | None = None, replay_n: int = 0,
                seed: int = 13, nq_mode: str = "claims") -> list:
    """Pairs beyond HaluEval: NQ-open claims (:func:`data.faithfulness_ce.nq_claim_pairs`), SciFact
    SUPPORT/CONTRADICT claims, and ``replay_n`` pairs drawn from an earlier run's ``pairs.jsonl``
    (so a second stage does not forget the first). ``nq_mode="groups"``: NQ answer-selection groups
    (:func:`data.faithfulness_ce.nq_answer_groups`) for a listwise loss."""
    import random

    from rerank.train import load_pairs

    rng = random.Random(seed)
    out: list = []
    if nq_rows:
        from data.faithfulness_ce import NQ_SEED, nq_claim_pairs
        from data.nq_open import load_nq_oracle
        from generate.context_rot import build_items
        from registry import load_embedder

        items = build_items(load_nq_oracle(), load_embedder("minilm"), n_passages=2, limit=None, seed=NQ_SEED)
        if nq_mode == "groups":
            from data.faithfulness_ce import nq_answer_groups

            out += nq_answer_groups(items, n_rows=nq_rows, seed=seed)
        else:
            out += nq_claim_pairs(items, n_rows=nq_rows, seed=seed)
    if scifact_pairs:
        from data.faithfulness import scifact_claim_pairs

        sci = scifact_claim_pairs()
        out += rng.sample(sci, min(len(sci), scifact_pairs))
    if replay and replay_n:
        old = load_pairs(replay)
        out += rng.sample(list(old), min(len(old), replay_n))
    return out


def train_faithfulness_ce(out: Path | str, tasks=TASKS, rows_per_task: int = 1000, hard_share: float = 0.5,
                          init: str | None = "models/reranker-minilm-l6", max_length: int = 256, batch_size: int = 16,
                          lr: float = 3e-5, time_budget_s: float | None = None, threads: int | None = None,
                          seed: int = 13, command: str = "", freeze_layers: int = 0, nq_rows: int = 0,
                          scifact_pairs: int = 0, replay: str | None = None, replay_n: int = 0,
                          bf16: bool | None = None, qa_rows: int | None = None, target_precision: float = 0.9,
                          calibrate_n: int = 200, loss: str = "bce", nq_mode: str = "claims") -> Path:
    """Build the pairs, train, and write ``out/final`` with ``training.json``; returns that folder.

    ``bf16``: autocast in bf16 (None: only where the CPU has it natively, AVX512_BF16/AMX; emulated
    bf16 is several times slower than fp32). With HaluEval ``tasks``, the pass threshold is derived
    from ``target_precision`` (passed claims, Clopper-Pearson lower bound) on ``calibrate_n``
    length-matched items per task from train rows this run did not use, and stored under
    ``calibration`` in ``training.json``. ``recipe.tasks`` in ``training.json`` names every HaluEval task the weights have seen, this run's
    and the ``init`` model's, so a leave-one-task-out check cannot be fooled by a two-stage run.
    """
    import random

    from data.faithfulness_ce import HARD_CAP, HELDOUT, NQ_HELDOUT, NQ_SEED, SPLIT_SEED, build_ce_pairs
    from rerank.train import pair_counts, save_pairs, train_cross_encoder

    from rerank.backends import cpu_has_native_bf16

    if bf16 is None:
        bf16 = cpu_has_native_bf16()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {t: (qa_rows if t == "qa" and qa_rows is not None else rows_per_task) for t in tasks}
    pairs = build_ce_pairs(tasks, rows_per_task=rows, hard_share=hard_share, seed=seed, hard_cap=HARD_CAP) if tasks else []
    pairs = list(pairs) + extra_pairs(nq_rows, scifact_pairs, replay, replay_n, seed, nq_mode)
    if not pairs:
        raise ValueError("no training pairs: name --tasks, or give --nq-rows / --scifact-pairs")
    if loss == "bce":
        random.Random(seed).shuffle(pairs)
    save_pairs(pairs, out / "pairs.jsonl")
    final = train_cross_encoder(pairs, out, layers=6, epochs=1, batch_size=batch_size, lr=lr, max_length=max_length,
                                seed=seed, loss=loss, init=init, bf16=bf16, threads=threads,
                                time_budget_s=time_budget_s, progress=False, freeze_layers=freeze_layers)
    progress = json.loads((out / "progress.json").read_text())
    seen = sorted(set(tasks) | set(_init_tasks(init)), key=TASKS.index)
    meta = {"format_version": 1, "kind": "faithfulness-cross-encoder",
            "recipe": {"tasks": seen, "stage_tasks": list(tasks), "nq_rows": nq_rows, "nq_heldout": NQ_HELDOUT,
                       "nq_seed": NQ_SEED, "scifact_pairs": scifact_pairs, "replay": replay, "replay_n": replay_n, "qa_rows": qa_rows, "hard_cap": HARD_CAP,
                       "rows_per_task": rows_per_task, "hard_share": hard_share, "init": init,
                       "max_length": max_length, "batch_size": batch_size, "lr": lr, "loss": loss, "nq_mode": nq_mode, "bf16": bf16,
                       "time_budget_s": time_budget_s, "seed": seed, "freeze_layers": freeze_layers, "heldout": HELDOUT["qa"],
                       "heldout_per_task": HELDOUT, "split_seed": SPLIT_SEED},
            "pairs": pair_counts(pairs), "n_pairs": len(pairs), "progress": progress, "command": command}
    if tasks:  # the gate's threshold, derived from a target on train rows this run did not use
        from bench.benchmarks.faithfulness_ce import calibrate_threshold, calibration_items
        from cascade.faithfulness import FaithfulnessScorer

        items = calibration_items(out / "pairs.jsonl", n_per_task=calibrate_n, seed=seed, tasks=tasks)
        meta["calibration"] = calibrate_threshold(FaithfulnessScorer(str(final), max_length=max_length, threshold=0.5),
                                                  items, target_precision=target_precision)
    tmp = final / "training.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(final / "training.json")
    return final


def publish(src: Path | str, dst: Path | str, results: Path | str | None = None) -> Path:
    """Copy a trained model (``.../final``) to ``dst`` with fp16 weights, its ``training.json`` (the init
    chain's as ``stage1.json``, ``stage2.json``, ...) and a model card; with ``results`` (a ``ragfix bench faithfulness`` file) the
    card carries its metrics. Written to a temporary folder and moved into place: never half a model."""
    import shutil

    from bench.recipes.specialists import write_faithfulness_ce_card
    from cascade.faithfulness import read_card_meta
    from rerank.train import save_fp16

    src, dst = Path(src), Path(dst)
    meta = read_card_meta(src)
    stages, init = [], meta["recipe"].get("init")
    while init and (Path(init) / "training.json").is_file() and len(stages) < 10:  # the init chain, newest first
        stages.append(json.loads((Path(init) / "training.json").read_text()))
        init = stages[-1]["recipe"].get("init")
    stages.reverse()
    res = None
    if results:
        res = json.loads(Path(results).read_text())
        res["_path"] = str(results)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_fp16(src, tmp)
    shutil.copy(src / "training.json", tmp / "training.json")
    for k, st in enumerate(stages, 1):
        (tmp / f"stage{k}.json").write_text(json.dumps(st, indent=1) + "\n")
    write_faithfulness_ce_card(tmp, meta, stages, res)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["publish"]:
        q = argparse.ArgumentParser(prog="python -m bench.cli.train_faithfulness_ce publish",
                                    description="copy a trained faithfulness cross-encoder into models/ with its card")
        q.add_argument("--from", dest="src", required=True, help="the trained model folder (a run's final/)")
        q.add_argument("--out", required=True, help="e.g. models/faithfulness-minilm-ce")
        q.add_argument("--results", default=None, help="a ragfix bench faithfulness results file for the card's metrics")
        a = q.parse_args(argv[1:])
        if not (Path(a.src) / "training.json").is_file():
            q.error(f"--from {a.src}: no trained model there (no training.json)")
        if a.results and not Path(a.results).is_file():
            q.error(f"--results {a.results}: no such file")
        print(publish(a.src, a.out, a.results))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.cli.train_faithfulness_ce", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="work folder (checkpoints, pairs, log); the model lands in OUT/final")
    p.add_argument("--tasks", type=_tasks, default=TASKS, help="comma list of HaluEval tasks to train on, or none")
    p.add_argument("--nq-rows", type=int, default=0, help="NQ-open questions to build claims from (past the pipeline's held-out ones)")
    p.add_argument("--scifact-pairs", type=int, default=0, help="SciFact train SUPPORT/CONTRADICT pairs to add")
    p.add_argument("--replay", default=None, help="an earlier run's pairs.jsonl to draw --replay-n pairs from")
    p.add_argument("--replay-n", type=int, default=0)
    p.add_argument("--loss", choices=("bce", "listwise"), default="bce",
                   help="bce (pointwise) or listwise (softmax over pairs sharing a qid: with --nq-mode groups)")
    p.add_argument("--nq-mode", choices=("claims", "groups"), default="claims",
                   help="NQ-open as balanced claims (bce) or answer-selection groups (listwise)")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="bf16 autocast: auto = only on CPUs with native bf16 (AVX512_BF16/AMX)")
    p.add_argument("--rows-per-task", type=positive_int, default=1000)
    p.add_argument("--target-precision", type=_positive_float, default=0.9,
                   help="precision of passed claims the calibrated threshold must reach (CP lower bound)")
    p.add_argument("--qa-rows", type=positive_int, default=None,
                   help="HaluEval QA rows (default: --rows-per-task; length matching keeps ~11%% of QA's items)")
    p.add_argument("--hard-share", type=_positive_float, default=0.5)
    p.add_argument("--init", default="models/reranker-minilm-l6")
    p.add_argument("--max-length", type=positive_int, default=256)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--lr", type=_positive_float, default=3e-5)
    p.add_argument("--time-budget", type=_positive_float, default=None, help="wall-clock seconds of training")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--freeze-layers", type=int, choices=range(0, 6), default=0, metavar="K",
                   help="keep the embeddings and the first K of 6 encoder layers fixed (cheaper steps)")
    args = p.parse_args(argv)
    if not 0 < args.target_precision < 1:
        p.error(f"--target-precision must be in (0, 1), got {args.target_precision}")
    if args.hard_share > 1:
        p.error(f"--hard-share must be in (0, 1], got {args.hard_share}")
    if args.init and not Path(args.init).is_dir():
        p.error(f"--init {args.init}: no such model folder")
    for name in ("nq_rows", "scifact_pairs", "replay_n"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.replay_n and not (args.replay and Path(args.replay).is_file()):
        p.error(f"--replay-n needs --replay naming a pairs.jsonl file; got {args.replay!r}")
    if not args.tasks and not (args.nq_rows or args.scifact_pairs):
        p.error("--tasks none needs --nq-rows or --scifact-pairs: there would be nothing to train on")
    cmd = "python -m bench.cli.train_faithfulness_ce " + " ".join(shlex.quote(a) for a in argv)
    final = train_faithfulness_ce(
        args.out, args.tasks, rows_per_task=args.rows_per_task, hard_share=args.hard_share, init=args.init,
        max_length=args.max_length, batch_size=args.batch_size, lr=args.lr, time_budget_s=args.time_budget,
        threads=args.threads, seed=args.seed, command=cmd, freeze_layers=args.freeze_layers, nq_rows=args.nq_rows,
        scifact_pairs=args.scifact_pairs, replay=args.replay, replay_n=args.replay_n,
        bf16={"auto": None, "on": True, "off": False}[args.bf16], qa_rows=args.qa_rows,
        target_precision=args.target_precision, loss=args.loss, nq_mode=args.nq_mode)
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
