"""Domain adaptation of a bi-encoder without human labels (Embedding Plateau, VI).

Two recipes over model objects and text lists (this module never reads a data set; the command
``ragfix adapt embedder`` in :mod:`bench.cli.adapt` builds the pseudo-queries and negatives):

- **GPL-style MarginMSE** (Wang et al., NAACL 2022, "GPL"; Hofstaetter et al. 2020 for the loss):
  each :class:`MarginGroup` is one pseudo-query, its positive passage and hard negatives, with the
  teacher cross-encoder's logit for every passage (:func:`teacher_logits`). The student's score is
  ``scale * cos(q, p)`` (``scale`` is one learned scalar, started at the ratio of the teacher's
  margin spread to the student's, because a normalising bi-encoder's cosines live in [-1, 1] while
  the teacher's logits do not) and the loss is the mean squared error between the student's and the
  teacher's margins ``s(q, pos) - s(q, neg_j)``. The teacher, not a binary label, says how much worse
  each negative is, so a "negative" that is in fact relevant costs little.
- **ICT in-batch contrastive** (:func:`train_in_batch`), the cheaper baseline: (sentence, rest of
  its document) pairs with every other pair's passage in the batch as a negative (softmax cross
  entropy over ``20 * cos``, the MultipleNegativesRankingLoss objective), no teacher.

Both run one loop: AdamW, linear warm-up to ``lr`` then a constant rate (so a time budget may stop
the run at any step without cutting a decay short), gradient clipping 1.0, bf16 autocast on CPUs
with native bf16 (AVX-512 BF16 / AMX; elsewhere it is emulated and slow, so ``bf16="auto"`` turns
it off), a fixed seed for the order of examples. Every ``checkpoint_every`` steps the weights,
optimiser and position are written to ``<work>/checkpoint`` (write, then rename: a kill never
leaves half a checkpoint); ``resume=True`` continues there. ``max_steps`` and ``max_minutes``
bound the run (minutes count over resumed runs too).

Failure modes: empty inputs or groups of different sizes raise :class:`ValueError`; a non-finite
loss raises :class:`FloatingPointError` naming the step (the checkpoint before it is kept);
a checkpoint from another recipe or model refuses to resume (:class:`ValueError`).
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["MarginGroup", "teacher_logits", "train_margin_mse", "train_in_batch", "native_bf16", "save_fp16_embedder"]


class MarginGroup(NamedTuple):
    """One pseudo-query with ``passages[0]`` its positive, the rest its negatives, and the teacher's logits."""

    query: str
    passages: tuple[str, ...]
    teacher: tuple[float, ...]
    qid: str


def native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX), so autocast speeds training up."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _use_bf16(bf16: bool | str) -> bool:
    return native_bf16() if bf16 == "auto" else bool(bf16)


def teacher_logits(cross_encoder, pairs: Sequence[tuple[str, str]], batch_size: int = 32, bf16: bool | str = "auto",
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Raw logits of a sentence-transformers ``CrossEncoder`` for every (query, passage) pair, in order.

    Scored in chunks of 1024 pairs so ``progress(done, total)`` can report. Raises
    :class:`FloatingPointError` if any logit is NaN or infinite (a broken teacher must not train a student).
    """
    import torch

    if len(pairs) == 0:
        return np.zeros(0, dtype=np.float32)
    out: list[np.ndarray] = []
    chunk = 1024
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=_use_bf16(bf16)):
        for i in range(0, len(pairs), chunk):
            part = [tuple(p) for p in pairs[i:i + chunk]]
            s = cross_encoder.predict(part, batch_size=batch_size, activation_fn=torch.nn.Identity(),
                                      convert_to_numpy=True, show_progress_bar=False)
            out.append(np.asarray(s, dtype=np.float32).reshape(-1))
            if progress:
                progress(min(i + chunk, len(pairs)), len(pairs))
    scores = np.concatenate(out)
    if not np.isfinite(scores).all():
        raise FloatingPointError(f"teacher gave {int((~np.isfinite(scores)).sum())} non-finite logits; check its weights")
    return scores


def _embed(model, texts: Sequence[str]):
    feats = model.tokenize(list(texts))
    feats = {k: v.to(model.device) for k, v in feats.items() if hasattr(v, "to")}
    emb = model(feats)["sentence_embedding"]
    import torch

    return torch.nn.functional.normalize(emb.float(), dim=-1)


def _checkpoint(ckpt: Path, state: dict) -> None:
    import torch

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    old = ckpt.with_name(ckpt.name + ".old")
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    if old.exists():
        shutil.rmtree(old)


def _loop(model, n_examples: int, batch_loss: Callable, extra_params: list, work: Path, recipe: str, *, batch_size: int,
          lr: float, warmup_steps: int, max_steps: int | None, max_minutes: float | None, checkpoint_every: int,
          bf16: bool | str, seed: int, resume: bool, log: Callable[[str], None]) -> dict:
    import torch

    if n_examples == 0:
        raise ValueError(f"{recipe}: no training examples; build at least one")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")
    if max_steps is None and max_minutes is None:
        raise ValueError("give max_steps or max_minutes: the run needs a budget")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    use_bf16 = _use_bf16(bf16)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad] + extra_params
    opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr},
                             {"params": extra_params, "lr": lr * 100, "weight_decay": 0.0}], lr=lr, weight_decay=0.01)
    base_lrs = [g["lr"] for g in opt.param_groups]
    per_epoch = max(1, n_examples // batch_size)
    step, spent, losses = 0, 0.0, []
    ckpt = work / "checkpoint"
    key = {"recipe": recipe, "n_examples": n_examples, "batch_size": batch_size, "seed": seed}
    if resume and (ckpt / "state.pt").is_file():
        st = torch.load(ckpt / "state.pt", weights_only=False)
        if st["key"] != key:
            raise ValueError(f"{ckpt}: checkpoint is for {st['key']}, this run is {key}; use another work folder or drop --resume")
        model.load_state_dict(st["model"])
        for p, v in zip(extra_params, st["extra"]):
            p.data.copy_(v)
        opt.load_state_dict(st["opt"])
        step, spent, losses = st["step"], st["spent"], st["losses"]
        log(f"resumed at step {step} ({spent / 60:.1f} min spent)")
    model.train()
    t0 = time.monotonic()
    logf = open(work / "train_log.jsonl", "a")
    stop_reason = "max_steps"

    def save() -> None:
        _checkpoint(ckpt, {"key": key, "model": model.state_dict(), "extra": [p.detach().clone() for p in extra_params],
                           "opt": opt.state_dict(), "step": step, "spent": spent + time.monotonic() - t0, "losses": losses})

    try:
        while max_steps is None or step < max_steps:
            if max_minutes is not None and spent + time.monotonic() - t0 >= 60 * max_minutes:
                stop_reason = "max_minutes"
                break
            epoch, pos = divmod(step, per_epoch)
            order = np.random.default_rng(seed + epoch).permutation(n_examples)
            idx = order[pos * batch_size:(pos + 1) * batch_size]
            scale = min(1.0, (step + 1) / max(1, warmup_steps))
            for g, b in zip(opt.param_groups, base_lrs):
                g["lr"] = b * scale
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                loss = batch_loss(idx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{recipe}: loss is {loss.item()} at step {step}; lower lr (checkpoint at {ckpt} kept)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            losses.append(float(loss.item()))
            logf.write(json.dumps({"step": step, "loss": losses[-1], "min": round((spent + time.monotonic() - t0) / 60, 2)}) + "\n")
            if step % 10 == 0:
                logf.flush()
                log(f"step {step} loss {np.mean(losses[-10:]):.4f} ({(spent + time.monotonic() - t0) / 60:.1f} min)")
            if step % checkpoint_every == 0:
                save()
        save()
    finally:
        logf.close()
    model.eval()
    return {"recipe": recipe, "steps": step, "examples_seen": step * batch_size, "epochs": round(step / per_epoch, 3),
            "minutes": round((spent + time.monotonic() - t0) / 60, 2), "stopped_by": stop_reason, "bf16": use_bf16,
            "loss_first50": round(float(np.mean(losses[:50])), 4) if losses else None,
            "loss_last50": round(float(np.mean(losses[-50:])), 4) if losses else None}


def train_margin_mse(model, groups: Sequence[MarginGroup], work: Path | str, *, batch_size: int = 16, lr: float = 2e-5,
                     warmup_steps: int = 100, max_steps: int | None = None, max_minutes: float | None = None,
                     checkpoint_every: int = 50, bf16: bool | str = "auto", seed: int = 13, resume: bool = False,
                     log: Callable[[str], None] = print) -> dict:
    """Fit a sentence-transformers ``model`` (in place) to the teacher's margins in ``groups``; returns run stats.

    Every group must have the same number of passages (>= 2). ``scale`` (the student's cosine ->
    logit factor) starts at std(teacher margins) / std(student margins) over the first 256 groups.
    """
    import torch

    if not groups:
        raise ValueError("train_margin_mse: no groups")
    width = len(groups[0].passages)
    bad = [g.qid for g in groups if len(g.passages) != width or len(g.teacher) != width]
    if width < 2 or bad:
        raise ValueError(f"every group needs the same number (>= 2) of passages and teacher logits; first bad: {bad[:3]}")
    teacher = torch.tensor(np.array([g.teacher for g in groups], dtype=np.float32))
    t_margin = teacher[:, :1] - teacher[:, 1:]
    with torch.inference_mode():
        sample = groups[:256]
        q = _embed(model, [g.query for g in sample])
        p = _embed(model, [t for g in sample for t in g.passages]).view(len(sample), width, -1)
        cos = torch.einsum("bd,bkd->bk", q, p)
        s_margin = cos[:, :1] - cos[:, 1:]
    init = float(t_margin[:len(sample)].std() / max(float(s_margin.std()), 1e-3))
    log_scale = torch.nn.Parameter(torch.tensor(math.log(max(init, 1.0))))
    log(f"margin-mse: {len(groups)} groups of {width}; teacher margin std {float(t_margin.std()):.3f}, initial scale {init:.2f}")

    def batch_loss(idx: np.ndarray):
        qs = _embed(model, [groups[i].query for i in idx])
        ps = _embed(model, [t for i in idx for t in groups[i].passages]).view(len(idx), width, -1)
        s = torch.exp(log_scale) * torch.einsum("bd,bkd->bk", qs, ps)
        return torch.nn.functional.mse_loss(s[:, :1] - s[:, 1:], t_margin[torch.as_tensor(idx)])

    stats = _loop(model, len(groups), batch_loss, [log_scale], Path(work), "margin-mse", batch_size=batch_size, lr=lr,
                  warmup_steps=warmup_steps, max_steps=max_steps, max_minutes=max_minutes, checkpoint_every=checkpoint_every,
                  bf16=bf16, seed=seed, resume=resume, log=log)
    stats["scale"] = round(float(torch.exp(log_scale.detach())), 3)
    return stats


def train_in_batch(model, pairs: Sequence[tuple[str, str]], work: Path | str, *, batch_size: int = 32, lr: float = 2e-5,
                   warmup_steps: int = 100, max_steps: int | None = None, max_minutes: float | None = None,
                   checkpoint_every: int = 50, bf16: bool | str = "auto", seed: int = 13, resume: bool = False,
                   scale: float = 20.0, log: Callable[[str], None] = print) -> dict:
    """In-batch-negatives contrastive training on (query, positive) ``pairs`` (MultipleNegativesRankingLoss objective)."""
    import torch

    if not pairs:
        raise ValueError("train_in_batch: no pairs")

    def batch_loss(idx: np.ndarray):
        qs = _embed(model, [pairs[i][0] for i in idx])
        ps = _embed(model, [pairs[i][1] for i in idx])
        logits = scale * qs @ ps.T
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(idx)))

    return _loop(model, len(pairs), batch_loss, [], Path(work), "ict-in-batch", batch_size=batch_size, lr=lr,
                 warmup_steps=warmup_steps, max_steps=max_steps, max_minutes=max_minutes, checkpoint_every=checkpoint_every,
                 bf16=bf16, seed=seed, resume=resume, log=log)


def save_fp16_embedder(model, dst: Path | str) -> Path:
    """Save a sentence-transformers ``model`` to ``dst`` with fp16 weights (half the size); it loads as fp32.

    The model object is left in fp32. Written to ``dst.tmp`` then renamed, so a kill leaves no half folder.
    """
    import copy

    import torch

    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    half = copy.deepcopy(model).to(torch.float16)
    half.save(str(tmp))
    cfg_path = tmp / "config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cfg["dtype"] = "float32"  # fp16 matmuls are slow on CPU: load the fp16 weights as fp32
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst
