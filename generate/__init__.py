"""Generation: LLM backends with prefill/decode timing, prompt assembly with citations (VII, II).

Lift-out needs: retrieval, cascade, rerank, monitor (measured from the import graph: the
faithfulness gate uses ``cascade.support_features``, which brings ``cascade``'s own needs;
``context_rot`` uses ``monitor.bounds``). Never bench, registry or data: LLMs and scorers are
passed in as objects. ``tests/unit/test_liftout.py`` runs the example below from such a copy.

Example (prompt assembly and citation parsing; an LLM backend takes the messages)::

    from generate import build_messages, parse_citations
    from retrieval import Document

    docs = [Document("31715818", "Nanotechnologies are emerging platforms that could be useful in measuring, "
                     "understanding, and manipulating stem cells.",
                     "New opportunities: the use of nanotechnologies to manipulate and track stem cells."),
            Document("14717500", "Genome-wide association studies (GWAS) have now identified at least 2,000 "
                     "common variants that appear associated with common diseases or related traits.",
                     "Rare Variants Create Synthetic Genome-Wide Associations"),
            Document("19238", "Two human Golli-MBP cDNAs have been isolated.",
                     "The human myelin basic protein gene is included within a 179-kilobase transcription unit")]
    messages = build_messages("What do rare variants create?", docs[1:])
    print(messages[-1]["content"][:80])
    print(parse_citations("Synthetic genome-wide associations [1].", docs[1:]))  # ['14717500']
"""
from generate.backends import Generation, LLMBackend, Messages, TransformersBackend
from generate.openai_compat import OpenAICompatBackend, OpenAICompatError
from generate.prompt import SYSTEM_PROMPT, build_messages, parse_citations, truncate_words

__all__ = ["Generation", "LLMBackend", "Messages", "TransformersBackend", "OpenAICompatBackend", "OpenAICompatError", "SYSTEM_PROMPT",
           "build_messages", "parse_citations", "truncate_words"]
