"""Generation: LLM backends with prefill/decode timing, prompt assembly with citations (VII, II)."""
from generate.backends import Generation, LLMBackend, Messages, TransformersBackend
from generate.openai_compat import OpenAICompatBackend, OpenAICompatError
from generate.prompt import SYSTEM_PROMPT, build_messages, parse_citations, truncate_words

__all__ = ["Generation", "LLMBackend", "Messages", "TransformersBackend", "OpenAICompatBackend", "OpenAICompatError", "SYSTEM_PROMPT",
           "build_messages", "parse_citations", "truncate_words"]
