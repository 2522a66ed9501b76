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
from typing import Callable, NamedTuple, Protocol, Sequence, runtime_checkable

__all__ = ["Generation", "LLMBackend", "TransformersBackend", "Messages", "Prefix", "OnToken", "TextDeltas"]

Messages = Sequence[dict]
# ``on_token(delta)``: called with each new piece of answer text as it is decoded (streaming). It may
# raise to stop generation early (e.g. the client went away or the deadline passed); the exception
# propagates out of ``generate``.
OnToken = Callable[[str], None]


class TextDeltas:
    """Turns a growing token-id list into text deltas for :data:`OnToken`, safe across multi-byte characters.

    ``push(ids)`` decodes the whole list (``decode(ids)``) and returns the text not yet emitted; a
    decode ending in U+FFFD (an incomplete UTF-8 sequence split over tokens) is held back until the
    next token completes it. Leading whitespace of the answer is dropped, as ``Generation.text``
    is stripped. The concatenated deltas equal ``decode(ids).strip()`` up to trailing whitespace.
    """

    def __init__(self, decode: Callable[[list], str]) -> None:
        self.decode = decode
        self.sent: int | None = None  # characters of decode(ids) already emitted (None: nothing but whitespace yet)

    def push(self, ids: list) -> str:
        """The text that ``ids`` (all tokens so far) adds to what earlier calls returned."""
        text = self.decode(ids)
        if text.endswith("\ufffd"):
            return ""
        if self.sent is None:
            if not text.strip():
                return ""
            self.sent = len(text) - len(text.lstrip())
        delta = text[self.sent:]
        self.sent = max(self.sent, len(text))
        return delta


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


class Prefix(NamedTuple):
    """A prefilled prompt prefix: its token ids and the KV cache over them (backend-specific object)."""

    ids: list
    cache: object
    prefill_s: float


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

    def prompt_prefix(self, messages: Messages) -> list[int]:
        """Token ids of the chat-templated prompt cut after the last message's text that precedes a
        ``"\n\nPassages:"`` marker -- the [system + question] part of a question-first prompt
        (:func:`generate.prompt.build_messages` with ``question_first=True``), known before reranking ends."""
        msgs = [dict(m) for m in messages]
        head, sep, _ = msgs[-1]["content"].partition("\n\nPassages:")
        if not sep:
            raise ValueError("prompt_prefix: the last message has no '\\n\\nPassages:' marker; build it with question_first=True")
        text = self.tokenizer.apply_chat_template(msgs[:-1] + [{"role": msgs[-1]["role"], "content": head}], tokenize=False)
        cut = text.rfind(head) + len(head)
        return self.tokenizer(text[:cut], add_special_tokens=False)["input_ids"]

    def prompt_through_passages(self, messages: Messages) -> list[int]:
        """Token ids of the chat-templated prompt cut after its last passage block: the question-first
        prompt's [system + question + passages so far] part, before the closing question. The streaming
        overlap (``Pipeline(overlap_prefill="stream")``) prefills it one passage at a time."""
        msgs = [dict(m) for m in messages]
        head, sep, _ = msgs[-1]["content"].rpartition("\n\nQuestion:")
        if not sep or "\n\nPassages:" not in head:
            raise ValueError("prompt_through_passages: the last message needs a 'Passages:' block followed by "
                             "'\n\nQuestion:'; build it with question_first=True and at least one passage")
        text = self.tokenizer.apply_chat_template(msgs[:-1] + [{"role": msgs[-1]["role"], "content": head}], tokenize=False)
        cut = text.rfind(head) + len(head)
        return self.tokenizer(text[:cut], add_special_tokens=False)["input_ids"]

    def prefill(self, prompt: Messages | str | Sequence[int], prefix: Prefix | None = None) -> Prefix:
        """Run the prompt (or a prefix of a later prompt) through the model and keep its KV cache.

        Pass the result to :meth:`generate` as ``prefix=``: only the tokens after the longest common
        prefix are then computed. This is what overlaps LLM prefill with reranking (VIII). With
        ``prefix`` (an earlier :meth:`prefill` of a shorter prompt) only the tokens after the common
        part are computed here too: the streaming overlap extends the prefix one passage at a time.
        """
        import torch

        if isinstance(prompt, (list, tuple)) and (not prompt or isinstance(prompt[0], int)):
            ids = list(prompt)
            if not ids:
                raise ValueError("prefill: empty token list")
        else:
            ids = self.encode_prompt(prompt)
        t0 = time.perf_counter()
        with torch.inference_mode():
            past, n = self._reuse(ids, prefix)
            out = self.model(input_ids=torch.tensor([ids[n:]], device=self.device), use_cache=True, logits_to_keep=1,
                             **({"cache": past} if past is not None else {}))
        return Prefix(ids, out.cache, time.perf_counter() - t0)

    def _reuse(self, ids: list[int], prefix: Prefix | None):
        """(KV cache valid for ids[:n], n): a private copy of the prefix's cache cut to the common prefix."""
        if prefix is None:
            return None, 0
        import copy

        n = 0
        for a, b in zip(prefix.ids, ids):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)  # at least one new token, to get the next-token logits
        if n <= 0:
            return None, 0
        cache = copy.deepcopy(prefix.cache)  # the prefix may serve many requests; never mutate it
        extra = cache.get_seq_length() - n
        if extra > 0:
            cache.crop(-extra)  # this transformers version takes the number of tokens to drop, negated
        return cache, n

    def generate(self, messages: Messages | str, max_new_tokens: int = 64, prefix: Prefix | None = None,
                 on_token: OnToken | None = None) -> Generation:
        """Greedy answer; with ``prefix`` (from :meth:`prefill`) the shared leading tokens are not recomputed
        and ``prefill_s`` counts only the remainder. ``on_token`` receives each decoded text delta as
        it is produced (streaming; see :data:`OnToken`); the returned text is the same either way."""
        import torch

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        ids = self.encode_prompt(messages)
        if len(ids) > self.max_context:
            raise ValueError(f"prompt has {len(ids)} tokens, over max_context={self.max_context}; pack fewer or shorter passages")
        with torch.inference_mode():
            t0 = time.perf_counter()
            past, n = self._reuse(ids, prefix)
            input_ids = torch.tensor([ids[n:]], device=self.device)
            # logits_to_keep=1: only the last position's logits are needed (vocab 49k x prompt length saved).
            out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1,
                             **({"cache": past} if past is not None else {}))
            t1 = time.perf_counter()
            out_ids = self._greedy(out, max_new_tokens, on_token)
            t2 = time.perf_counter()
        text = self.tokenizer.decode(out_ids, skip_special_tokens=True).strip()
        return Generation(text, len(ids), len(out_ids), t1 - t0, t2 - t1, self.name)

    def _greedy(self, out, max_new_tokens: int, on_token: OnToken | None = None) -> list[int]:
        """Greedy tokens after a prefill output ``out`` (its logits and cache), stopping at EOS."""
        import torch

        past, nxt, out_ids = out.cache, int(out.logits[0, -1].argmax()), []
        deltas = TextDeltas(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)) if on_token else None
        while nxt not in self._eos and len(out_ids) < max_new_tokens:
            out_ids.append(nxt)
            if deltas is not None:
                delta = deltas.push(out_ids)
                if delta:
                    on_token(delta)
            if len(out_ids) == max_new_tokens:
                break
            step = self.model(input_ids=torch.tensor([[nxt]], device=self.device), cache=past, use_cache=True)
            past, nxt = step.cache, int(step.logits[0, -1].argmax())
        return out_ids

    def generate_and_score(self, messages: Messages | str, continuation: str, max_new_tokens: int = 16) -> tuple[Generation, float]:
        """Greedy answer and the teacher-forced log-likelihood (natural log, summed over tokens) of
        ``continuation`` after the prompt, sharing one prefill (the context-rot measurement, VII)."""
        return self.generate_and_score_many([messages], continuation, max_new_tokens)[0]

    def generate_and_score_many(self, prompts: Sequence[Messages | str], continuation: str,
                                max_new_tokens: int = 16) -> list[tuple[Generation, float]]:
        """:meth:`generate_and_score` for several prompts (e.g. one question, passages in several orders) in one batch.

        Prompts are left-padded to one length (position ids follow the attention mask), prefilled
        together, scored on ``continuation`` from the same cache (then cropped back), and decoded
        greedily together. On CPU the prefill costs what the prompts cost one by one; the decode
        loop's per-step overhead is paid once per batch instead of once per prompt. Each
        :class:`Generation` carries the batch's prefill and decode seconds divided by the batch size.
        """
        import torch

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not prompts:
            raise ValueError("prompts is empty")
        cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not cont:
            raise ValueError("continuation is empty")
        ids = [self.encode_prompt(m) for m in prompts]
        longest = max(len(x) for x in ids)
        if longest + len(cont) > self.max_context:
            raise ValueError(f"prompt + continuation have {longest + len(cont)} tokens, over max_context={self.max_context}")
        b, dev = len(ids), self.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(self._eos))
        padded = any(len(x) < longest for x in ids)
        inp = torch.tensor([[pad] * (longest - len(x)) + x for x in ids], device=dev)
        mask = torch.tensor([[0] * (longest - len(x)) + [1] * len(x) for x in ids], device=dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        # Without padding, no mask is passed at all (the plain causal path, as in generate()).
        def kw(m, p):
            return {"attention_mask": m, "position_ids": p} if padded else {}

        with torch.inference_mode():
            t0 = time.perf_counter()
            out = self.model(input_ids=inp, use_cache=True, logits_to_keep=1, **kw(mask, pos))
            cache, first = out.cache, out.logits[:, -1].float()
            t1 = time.perf_counter()
            ll = torch.log_softmax(first, -1)[:, cont[0]].clone()
            if len(cont) > 1:
                n = len(cont) - 1
                step_mask = torch.cat([mask, torch.ones(b, n, dtype=mask.dtype, device=dev)], 1)
                step_pos = pos[:, -1:] + 1 + torch.arange(n, device=dev)
                forced = self.model(input_ids=torch.tensor([cont[:-1]] * b, device=dev), cache=cache, use_cache=True,
                                    **kw(step_mask, step_pos))
                lp = torch.log_softmax(forced.logits.float(), -1)
                ll += lp[:, torch.arange(n), torch.tensor(cont[1:])].sum(1)
                cache.crop(-n)  # back to the prompt alone for the greedy answer (this version takes -tokens to drop)
            nxt = first.argmax(-1)
            outs: list[list[int]] = [[] for _ in range(b)]
            done = [False] * b
            for step in range(max_new_tokens):
                for k, tok in enumerate(nxt.tolist()):
                    if not done[k]:
                        if tok in self._eos:
                            done[k] = True
                        else:
                            outs[k].append(tok)
                if all(done) or step == max_new_tokens - 1:
                    break
                mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=dev)], 1)
                pos = pos[:, -1:] + 1
                st = self.model(input_ids=nxt[:, None], cache=cache, use_cache=True, **kw(mask, pos))
                nxt = st.logits[:, -1].argmax(-1)
            t2 = time.perf_counter()
        return [(Generation(self.tokenizer.decode(o, skip_special_tokens=True).strip(), len(x), len(o),
                            (t1 - t0) / b, (t2 - t1) / b, self.name), float(v))
                for o, x, v in zip(outs, ids, ll.tolist())]
