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

__all__ = ["main", "train_faithfulness_ce"]

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
    tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad:
        raise argparse.ArgumentTypeError(f"--tasks takes a comma list of {', '.join(TASKS)}; got {text!r}")
    return tasks


def train_faithfulness_ce(out: Path | str, tasks=TASKS, rows_per_task: int = 1000, hard_share: float = 0.5,
                          init: str | None = "models/reranker-minilm-l6", max_length: int = 256, batch_size: int = 16,
                          lr: float = 3e-5, time_budget_s: float | None = None, threads: int | None = None,
                          seed: int = 13, command: str = "", freeze_layers: int = 0) -> Path:
    """Build the pairs, train, and write ``out/final`` with ``training.json``; returns that folder."""
    from data.faithfulness_ce import HELDOUT, SPLIT_SEED, build_ce_pairs
    from rerank.train import pair_counts, save_pairs, train_cross_encoder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = build_ce_pairs(tasks, rows_per_task=rows_per_task, hard_share=hard_share, seed=seed)
    save_pairs(pairs, out / "pairs.jsonl")
    final = train_cross_encoder(pairs, out, layers=6, epochs=1, batch_size=batch_size, lr=lr, max_length=max_length,
                                seed=seed, loss="bce", init=init, bf16=True, threads=threads,
                                time_budget_s=time_budget_s, progress=False, freeze_layers=freeze_layers)
    progress = json.loads((out / "progress.json").read_text())
    meta = {"format_version": 1, "kind": "faithfulness-cross-encoder",
            "recipe": {"tasks": list(tasks), "rows_per_task": rows_per_task, "hard_share": hard_share, "init": init,
                       "max_length": max_length, "batch_size": batch_size, "lr": lr, "loss": "bce", "bf16": True,
                       "time_budget_s": time_budget_s, "seed": seed, "freeze_layers": freeze_layers, "heldout": HELDOUT["qa"],
                       "heldout_per_task": HELDOUT, "split_seed": SPLIT_SEED},
            "pairs": pair_counts(pairs), "n_pairs": len(pairs), "progress": progress, "command": command}
    (final / "training.json").write_text(json.dumps(meta, indent=1) + "\n")
    return final


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cli.train_faithfulness_ce", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="work folder (checkpoints, pairs, log); the model lands in OUT/final")
    p.add_argument("--tasks", type=_tasks, default=TASKS, help="comma list of HaluEval tasks to train on")
    p.add_argument("--rows-per-task", type=positive_int, default=1000)
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
    if args.hard_share > 1:
        p.error(f"--hard-share must be in (0, 1], got {args.hard_share}")
    if args.init and not Path(args.init).is_dir():
        p.error(f"--init {args.init}: no such model folder")
    cmd = "python -m bench.cli.train_faithfulness_ce " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    final = train_faithfulness_ce(args.out, args.tasks, args.rows_per_task, args.hard_share, args.init, args.max_length,
                                  args.batch_size, args.lr, args.time_budget, args.threads, args.seed, cmd,
                                  args.freeze_layers)
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
