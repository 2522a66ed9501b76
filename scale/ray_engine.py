"""Run a model over rows on Ray Data: one model load per actor, rows reassembled in input order.

The shape is Ray Data's batch-inference recipe: the rows (each carrying its index in the input) go
into a dataset, ``map_batches`` sends fixed-size batches (``batch_rows``) to a pool of ``workers`` actors (``ActorPoolStrategy(size=workers)``), each of
which loaded the model once in its constructor, and the driver collects ``(index, output)`` rows.
:func:`reassemble` puts them back in input order and raises when any index is missing, repeated or
out of range, so a lost or duplicated batch can never turn into a silently shifted matrix.

Failures: actors run with ``max_restarts`` and ``max_task_retries`` (:class:`RayOptions`), so a worker
process that dies mid-job is restarted and its in-flight batch re-sent; the output check above is
what proves no row was lost or doubled (``tests/integration/test_scale_ray.py`` kills a worker on its
first batch through ``fail_once_marker`` and checks both). An exception raised by the model itself
is not retried: it is a bug or bad input, and it fails the job with the worker's traceback.

Progress goes to the ``scale`` logger (rows done / total, every ``progress_every`` rows); Ray
Data's own progress bars are switched off so a log file stays readable.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

__all__ = ["RayOptions", "ray_cluster", "run_rows_on_ray", "reassemble", "encode_texts", "score_pairs"]

log = logging.getLogger("scale")


@dataclass(frozen=True)
class RayOptions:
    """How a job runs on Ray.

    Args:
        workers: actors in the pool (``concurrency`` of ``map_batches``); each loads the model once.
        batch_rows: rows per batch sent to an actor.
        address: an existing cluster (``ray://host:10001`` or ``auto``); ``None`` starts a local one
            sized by ``num_cpus`` (default ``workers``) that is shut down when the job ends.
        cpus_per_worker: CPUs reserved per actor (Ray sets the actor's ``OMP_NUM_THREADS`` from it).
        object_store_memory: bytes for a local cluster's object store (small by default: the rows are text).
        max_restarts / max_task_retries: a dead actor is restarted this many times and its batch re-sent.
        fail_once_marker: test hook. When set to a path that does not exist yet, the first actor to
            receive a batch creates the file and kills its own process (``os._exit``), exactly what an
            OOM-killed or preempted worker looks like to Ray. Never set it in production.
    """

    workers: int = 1
    batch_rows: int = 64
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_worker: float = 1.0
    object_store_memory: int = 400 * 1024 * 1024
    max_restarts: int = 3
    max_task_retries: int = 3
    progress_every: int = 1000
    fail_once_marker: str | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "batch_rows", "progress_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RayOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"RayOptions.cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.max_restarts < 0 or self.max_task_retries < 0:
            raise ValueError("RayOptions.max_restarts and max_task_retries must be >= 0")


@contextlib.contextmanager
def ray_cluster(options: RayOptions) -> Iterator[None]:
    """Connect to ``options.address`` or start a small local cluster; always shut it down afterwards.

    A Ray session the caller already started is reused and left running (it is theirs to stop).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    if options.address:
        kwargs["address"] = options.address
    else:
        kwargs["num_cpus"] = int(options.num_cpus or max(1, int(np.ceil(options.workers * options.cpus_per_worker))))
        kwargs["object_store_memory"] = int(options.object_store_memory)
    try:
        ray.init(**kwargs)
        yield
    finally:
        ray.shutdown()


class _RowModel:
    """The callable class ``map_batches`` instantiates once per actor: load once, run every batch."""

    def __init__(self, load: Callable[[], Any], run: Callable[[Any, dict], np.ndarray], fail_once_marker: str | None) -> None:
        t0 = time.perf_counter()
        self.model = load()
        logging.getLogger("scale").warning("actor pid %d: model loaded in %.1f s", os.getpid(), time.perf_counter() - t0)
        self.run = run
        self.fail_once_marker = fail_once_marker

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fail_once_marker is not None:
            try:
                fd = os.open(self.fail_once_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(17)  # the test hook: this worker process dies holding a batch
        out = np.asarray(self.run(self.model, batch))
        if out.shape[0] != len(batch["idx"]):
            raise RuntimeError(f"model returned {out.shape[0]} outputs for a batch of {len(batch['idx'])} rows")
        return {"idx": np.asarray(batch["idx"], dtype=np.int64), "out": out}


def reassemble(n: int, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Rows ``out[j]`` placed at ``idx[j]`` -> an array of ``n`` rows in input order.

    Raises :class:`RuntimeError` naming the first indices missing, repeated or out of range: the
    distributed job lost or duplicated rows and its output must not be used.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if idx.shape[0] != out.shape[0]:
        raise RuntimeError(f"{idx.shape[0]} indices for {out.shape[0]} outputs")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise RuntimeError(f"output rows carry indices outside [0, {n}): {bad[:5].tolist()}")
    counts = np.bincount(idx, minlength=n)
    if (counts != 1).any():
        missing = np.flatnonzero(counts == 0)
        doubled = np.flatnonzero(counts > 1)
        raise RuntimeError(f"distributed output is not exactly once: {missing.size} of {n} rows missing "
                           f"(first {missing[:5].tolist()}), {doubled.size} repeated (first {doubled[:5].tolist()})")
    result = np.empty((n, *out.shape[1:]), dtype=out.dtype)
    result[idx] = out
    return result


def run_rows_on_ray(columns: dict[str, Sequence], load: Callable[[], Any], run: Callable[[Any, dict], np.ndarray],
                    options: RayOptions) -> np.ndarray:
    """Apply ``run(model, batch)`` to every row of ``columns`` on a Ray actor pool; outputs in row order.

    ``columns`` maps column names to equal-length sequences (e.g. ``{"text": texts}``); a batch is the
    same mapping over a slice plus ``"idx"``. ``load`` and ``run`` must be picklable (module-level
    functions or ``functools.partial`` of them): they are shipped to every actor.
    """
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"columns must have equal lengths, got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("no rows to process")
    with ray_cluster(options):
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.max_errored_blocks = 0  # never drop a failed block silently
        items = [{"idx": i, **{k: v[i] for k, v in columns.items()}} for i in range(n)]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(n // options.batch_rows, 4 * options.workers * 4)))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates **ray_remote_args but names no replacement for max_restarts /
            # max_task_retries; without them Ray Data restarts a crash-looping actor forever.
            warnings.simplefilter("ignore", DeprecationWarning)
            mapped = ds.map_batches(
                _RowModel,
                fn_constructor_kwargs={"load": load, "run": run, "fail_once_marker": options.fail_once_marker},
                batch_size=options.batch_rows,
                batch_format="numpy",
                compute=ActorPoolStrategy(size=options.workers),
                num_cpus=options.cpus_per_worker,
                max_restarts=options.max_restarts,
                max_task_retries=options.max_task_retries,
            )
        idx_parts, out_parts = [], []
        done, next_report, t0 = 0, options.progress_every, time.perf_counter()
        for batch in mapped.iter_batches(batch_format="numpy", batch_size=None):
            idx_parts.append(batch["idx"])
            out_parts.append(batch["out"])
            done += len(batch["idx"])
            if done >= next_report or done >= n:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                log.info("ray: %d/%d rows (%.1f rows/s, %d workers)", done, n, rate, options.workers)
                next_report = (done // options.progress_every + 1) * options.progress_every
    return reassemble(n, np.concatenate(idx_parts), np.concatenate(out_parts))


# -- the two jobs -------------------------------------------------------------------------------

def _load_embedder(name: str) -> Any:
    from registry import load_embedder

    return load_embedder(name)


def _load_cross_encoder(name: str) -> Any:
    from registry import load_cross_encoder

    return load_cross_encoder(name)


def _encode_batch(model: Any, batch: dict) -> np.ndarray:
    return model.encode_documents([str(t) for t in batch["text"]])


def _score_batch(model: Any, batch: dict) -> np.ndarray:
    return np.asarray(model.score_pairs([(str(q), str(d)) for q, d in zip(batch["query"], batch["document"])]),
                      dtype=np.float32)


def encode_texts(texts: Sequence[str], model: str, engine: str = "local", options: RayOptions | None = None,
                 embedder: Any = None) -> np.ndarray:
    """Document embeddings ``(n, dim)`` float32 of ``texts`` with registry embedder ``model``.

    ``engine="local"`` uses ``embedder`` (or loads ``model``) in this process; ``"ray"`` runs
    :func:`run_rows_on_ray` with one embedder per actor. Both call the same ``encode_documents``;
    what differs between them is batch composition, which moves float32 outputs by ~1e-7.
    """
    from functools import partial

    if engine == "local":
        return (embedder if embedder is not None else _load_embedder(model)).encode_documents(list(texts))
    if engine != "ray":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    out = run_rows_on_ray({"text": list(texts)}, partial(_load_embedder, model), _encode_batch, options or RayOptions())
    return np.ascontiguousarray(out, dtype=np.float32)


def score_pairs(pairs: Sequence[tuple[str, str]], model: str, engine: str = "local", options: RayOptions | None = None,
                reranker: Any = None) -> np.ndarray:
    """Cross-encoder scores ``(n,)`` float32 of ``(query, document)`` pairs with registry cross-encoder ``model``."""
    from functools import partial

    if engine == "local":
        return np.asarray((reranker if reranker is not None else _load_cross_encoder(model)).score_pairs(list(pairs)),
                          dtype=np.float32)
    if engine != "ray":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    cols = {"query": [q for q, _ in pairs], "document": [d for _, d in pairs]}
    return run_rows_on_ray(cols, partial(_load_cross_encoder, model), _score_batch, options or RayOptions()).astype(np.float32)
