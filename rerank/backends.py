"""Numeric backends for a cross-encoder forward pass: fp32, bf16 autocast, int8 (torch or ONNX Runtime).

Failure mode VIII (Reranker on the Request Path). Once the work is cut (fewer pairs, shorter
pairs), what is left is matrix multiplies; lower-precision arithmetic runs them faster *where the
hardware has it*: bf16 on CPUs with AVX512_BF16 / AMX (emulated, and much slower, elsewhere; see
:func:`cpu_has_native_bf16`), int8 with VNNI or plain AVX2 through fbgemm / ONNX Runtime. Each
backend is checked against the fp32 scores by rank agreement (:mod:`rerank.agreement`,
``tests/unit/test_rerank_backends.py``), and ``ragfix bench rerank`` measures its latency and nDCG@10.

Backends take already padded ``int64`` arrays (``input_ids``, ``attention_mask``, optional
``token_type_ids``) and return one float32 logit per row. ``cuda-bf16`` / ``cuda-fp16`` run the same
torch model on a CUDA GPU under autocast (refused, with the reason, where torch sees no GPU; the GPU
figures come from ``scripts/gpu_bench.sh`` and are not measured yet). Left out: static (calibrated)
int8 quantization and fp16 on CPU (no CPU kernels worth having).

Example:
    >>> fwd = make_backend(cross_encoder.model, "int8")            # doctest: +SKIP
    >>> fwd(input_ids, attention_mask, token_type_ids)             # doctest: +SKIP
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["BACKENDS", "CUDA_BACKENDS", "cuda_refusal", "Backend", "make_backend", "cpu_has_native_bf16", "bf16_refusal", "resolve_backend", "export_onnx"]

BACKENDS = ("fp32", "bf16", "int8", "onnx", "onnx-int8", "cuda-bf16", "cuda-fp16")
CUDA_BACKENDS = ("cuda-bf16", "cuda-fp16")

Backend = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


def cpu_has_native_bf16() -> bool:
    """True when oneDNN reports native bf16 (AVX512_BF16 or AMX); without it bf16 is emulated and slow."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_refusal() -> str | None:
    """Why bf16 should not run here (emulated, slow), or ``None`` where the CPU (or a GPU) runs it natively."""
    if cpu_has_native_bf16():
        return None
    return ("no native bf16 on this CPU (oneDNN reports no AVX512_BF16/AMX): autocast emulates bf16 "
            "and was ~6x slower than fp32 on such a CPU")


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``bf16`` where the CPU runs it natively (ranking kept: top-10 overlap 0.98-0.99 in
    ``bench rerank``), else ``fp32``; an unknown name, or ``bf16`` on a CPU that emulates it, is refused."""
    if backend == "auto":
        return "fp32" if bf16_refusal() else "bf16"
    if backend not in BACKENDS:
        raise ValueError(f"relevance backend must be auto or one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "bf16" and bf16_refusal():
        raise ValueError(f"relevance backend bf16: {bf16_refusal()}; use auto, fp32 or onnx-int8")
    return backend


def cuda_refusal() -> str | None:
    """Why a ``cuda-*`` backend cannot run here, or ``None`` when torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    return "torch sees no CUDA device (torch.cuda.is_available() is False); use fp32, bf16 or onnx-int8 on CPU"


class _TorchBackend:
    def __init__(self, model: Any, mode: str) -> None:
        import torch

        self.mode = mode
        model = model.eval()
        if mode in CUDA_BACKENDS:
            why = cuda_refusal()
            if why:
                raise RuntimeError(f"backend {mode}: {why}")
            # A copy on the GPU, so a CPU model passed in stays usable on the CPU beside it.
            model = model if next(model.parameters()).is_cuda else copy.deepcopy(model).to("cuda")
        if mode == "int8":
            from torch.ao.quantization import quantize_dynamic

            # Dynamic quantization: Linear weights int8 once, activations quantized per batch at run
            # time; no calibration data needed. A copy, so the fp32 model stays usable beside it.
            model = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        self.device = next(model.parameters()).device if mode != "int8" else torch.device("cpu")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None) -> np.ndarray:
        import torch

        feed = {"input_ids": torch.from_numpy(input_ids).to(self.device),
                "attention_mask": torch.from_numpy(attention_mask).to(self.device)}
        if token_type_ids is not None:
            feed["token_type_ids"] = torch.from_numpy(token_type_ids).to(self.device)
        with torch.inference_mode():
            if self.mode in ("bf16", "cuda-bf16", "cuda-fp16"):
                dtype = torch.float16 if self.mode == "cuda-fp16" else torch.bfloat16
                with torch.autocast(self.device.type, dtype=dtype):
                    logits = self.model(**feed).logits
            else:
                logits = self.model(**feed).logits
        return logits.float()[:, 0].cpu().numpy()


def _fingerprint(model: Any) -> str:
    h = hashlib.sha256()
    h.update(repr(model.config.to_dict()).encode())
    for name, p in sorted(model.state_dict().items())[:8]:
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
    h.update(str(sum(float(p.detach().float().sum()) for p in model.parameters())).encode())
    return h.hexdigest()[:16]


def export_onnx(model: Any, folder: Path | str, quantize: bool = False) -> Path:
    """Export a Hugging Face sequence-classification model to ONNX (fp32), optionally int8-quantized.

    The file is cached under ``folder`` by a fingerprint of the weights, so the export runs once.
    Needs ``onnx`` (exporter and quantizer) and ``onnxruntime``.
    """
    import torch

    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install onnx==1.23.2") from exc
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(model)
    fp32_path = folder / f"cross-encoder-{fp}.onnx"
    if not fp32_path.is_file():
        model = model.eval().cpu()
        dummy = torch.ones((2, 16), dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        dyn = {n: {0: "batch", 1: "seq"} for n in names}
        tmp = fp32_path.with_suffix(f".tmp{os.getpid()}")
        # The TorchScript exporter (dynamo=False) needs only the onnx package; the dynamo exporter
        # would also need onnxscript.
        torch.onnx.export(model, (dummy, dummy, torch.zeros_like(dummy)), str(tmp), input_names=names,
                          output_names=["logits"], dynamic_axes={**dyn, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
        os.replace(tmp, fp32_path)
    if not quantize:
        return fp32_path
    int8_path = folder / f"cross-encoder-{fp}.int8.onnx"
    if not int8_path.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8_path.with_suffix(f".tmp{os.getpid()}.onnx")
        quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8)
        os.replace(tmp, int8_path)
    return int8_path


class _OnnxBackend:
    def __init__(self, model: Any, quantize: bool, cache_dir: Path | str | None, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("the onnx backends need onnxruntime: pip install onnxruntime==1.32.0") from exc
        if cache_dir is None:
            from retrieval.cache import default_cache_dir

            cache_dir = default_cache_dir() / "onnx"
        self.path = export_onnx(model, cache_dir, quantize=quantize)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        import torch

        opts.intra_op_num_threads = threads or torch.get_num_threads()
        # subtle: ORT's worker threads spin after each run by default; on a shared CPU (and beside
        # torch in the same process) that spinning steals the cores the next forward pass needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None) -> np.ndarray:
        feed = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = (token_type_ids if token_type_ids is not None else np.zeros_like(input_ids)).astype(np.int64)
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)[:, 0]


def make_backend(model: Any, backend: str = "fp32", cache_dir: Path | str | None = None, threads: int | None = None) -> Backend:
    """A forward function for ``model`` (a ``transformers`` sequence-classification model) on ``backend``.

    Args:
        model: e.g. ``sentence_transformers.CrossEncoder(...).model``.
        backend: one of ``BACKENDS``: ``fp32``, ``bf16`` (torch autocast), ``int8`` (torch dynamic
            quantization of Linear layers), ``onnx`` (ONNX Runtime fp32), ``onnx-int8`` (ONNX Runtime
            dynamic int8), ``cuda-bf16`` / ``cuda-fp16`` (torch autocast on a CUDA GPU; ``RuntimeError``
            without one).
        cache_dir: where ONNX exports are kept (default ``$RAGFIX_CACHE/onnx``).
        threads: ONNX Runtime intra-op threads (torch backends use ``torch.set_num_threads``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend in ("fp32", "bf16", "int8", *CUDA_BACKENDS):
        return _TorchBackend(model, backend)
    return _OnnxBackend(model, quantize=backend == "onnx-int8", cache_dir=cache_dir, threads=threads)
