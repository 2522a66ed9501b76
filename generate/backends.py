"""LLM backends: messages or a prompt in, text out, with token counts and prefill/decode timed apart.

Prefill (reading the prompt) and decode (writing the answer) have different costs and different
fixes: prefill is what overlaps with reranking (VIII) and what context length inflates (VII);
decode is what tokens-out pricing charges (V). So every :class:`Generation` reports both.

:class:`TransformersBackend` runs any causal LM in-process with a hand-written greedy loop over
the KV cache (so prefill and decode can be timed exactly); CUDA when present, else CPU.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple, Protocol, Sequence, runtime_checkable

__all__ = ["Generation", "LLMBackend", "TransformersBackend", "Messages"]

Messages = Sequence[dict]


class Generation(NamedTuple):
    text: str
    prompt_tokens: int
    completion_tokens: int
    prefill_s: float  # wall seconds to read the prompt and produce the first token
    decode_s: float  # wall seconds for the remaining tokens
    model: str

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s


@runtime_checkable
class LLMBackend(Protocol):
    name: str

    def generate(self, messages: Messages | str, max_new_tokens: int = 64) -> Generation: ...

    def count_tokens(self, text: str) -> int: ...


def _check_messages(messages: Messages | str) -> None:
    if isinstance(messages, str):
        if not messages.strip():
            raise ValueError("prompt is empty")
        return
    if not messages:
        raise ValueError("messages is empty; pass at least one {'role': ..., 'content': ...}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {m!r}")


class TransformersBackend:
    """A causal LM from a local folder (or hub id, online), greedy decoding over the KV cache.

    Args:
        model_name_or_path: folder with config, weights and tokenizer (e.g. the converted SmolLM2).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        max_context: prompts longer than this many tokens are rejected with a clear error.
    """

    def __init__(self, model_name_or_path: str | Path, name: str | None = None, device: str = "auto",
                 max_context: int = 8192, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_name_or_path)).to(device).eval()
        self.name = name or Path(str(model_name_or_path)).name
        self.max_context = max_context
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, (list, tuple)) else [eos]
        self._eos = {int(e) for e in eos if e is not None} | ({self.tokenizer.eos_token_id} - {None})

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_prompt(self, messages: Messages | str) -> list[int]:
        """Token ids of the full prompt (chat template applied to messages, with generation prompt)."""
        _check_messages(messages)
        if isinstance(messages, str):
            return self.tokenizer(messages)["input_ids"]
        enc = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(enc, dict) or hasattr(enc, "keys"):
            enc = enc["input_ids"]
        return list(enc)

    def generate(self, messages: Messages | str, max_new_tokens: int = 64) -> Generation:
        import torch

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        ids = self.encode_prompt(messages)
        if len(ids) > self.max_context:
            raise ValueError(f"prompt has {len(ids)} tokens, over max_context={self.max_context}; pack fewer or shorter passages")
        input_ids = torch.tensor([ids], device=self.device)
        out_ids: list[int] = []
        with torch.inference_mode():
            t0 = time.perf_counter()
            # logits_to_keep=1: only the last position's logits are needed (vocab 49k x prompt length saved).
            out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
            past = out.cache
            nxt = int(out.logits[0, -1].argmax())
            t1 = time.perf_counter()
            while nxt not in self._eos and len(out_ids) < max_new_tokens:
                out_ids.append(nxt)
                if len(out_ids) == max_new_tokens:
                    break
                out = self.model(input_ids=torch.tensor([[nxt]], device=self.device), cache=past, use_cache=True)
                past = out.cache
                nxt = int(out.logits[0, -1].argmax())
            t2 = time.perf_counter()
        text = self.tokenizer.decode(out_ids, skip_special_tokens=True).strip()
        return Generation(text, len(ids), len(out_ids), t1 - t0, t2 - t1, self.name)
