"""A BERT cross-encoder scored from the *mean* of its token states instead of [CLS].

Failure mode VIII (Reranker on the Request Path): the cascade's cheap stage is the first two
layers of MiniLM. After two layers of these weights the [CLS] state barely depends on the input
(``python -m bench.probes.probe_pooling``: spread 0.002, frozen-probe AUC 0.504 on SciFact pairs), while
the mean of the token states carries the signal (spread 0.094, AUC 0.601). A [CLS] head starts
from a constant and, on CPU budgets, never left chance loss; a mean-pooling head starts from
features that already rank. This module is that head, as a regular ``transformers`` model type
(``ragfix-meanpool-bert``) registered with the Auto classes, so everything downstream works
unchanged: sentence-transformers ``CrossEncoder(folder)`` loads it, ``rerank.backends`` runs it on
fp32 / bf16 / int8 and exports it to ONNX, ``.logits`` is one score per pair.

Registration happens when this module is imported; the project's loaders (``CrossEncoderReranker``,
``RerankEngine``, the training recipe) import it before loading any folder. It is not imported by
``import rerank`` because it pulls in transformers (seconds). Code outside the project that loads a
mean-pool folder with ``CrossEncoder(...)`` must ``import rerank.meanpool`` first, or transformers
reports an unrecognized model type.

Example:
    >>> from rerank.meanpool import meanpool_cross_encoder      # doctest: +SKIP
    >>> ce = meanpool_cross_encoder(minilm_path(), layers=2, max_length=128)   # doctest: +SKIP
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

__all__ = ["MODEL_TYPE", "MeanPoolBertConfig", "MeanPoolBertForSequenceClassification", "meanpool_cross_encoder"]

MODEL_TYPE = "ragfix-meanpool-bert"


class MeanPoolBertConfig(BertConfig):
    """A ``BertConfig`` under its own model type, so the Auto classes pick the mean-pool head."""

    model_type = MODEL_TYPE


class MeanPoolBertForSequenceClassification(BertPreTrainedModel):
    """BERT encoder -> masked mean of the last hidden states -> dropout -> linear head (``num_labels`` logits)."""

    config_class = MeanPoolBertConfig
    base_model_prefix = "bert"

    def __init__(self, config: MeanPoolBertConfig) -> None:
        super().__init__(config)
        import torch

        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        drop = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = torch.nn.Dropout(drop)
        self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                labels: Any = None, **kwargs: Any) -> SequenceClassifierOutput:
        import torch

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # subtle: clamp the count so an all-padding row (never produced by a tokenizer, but possible
        # from hand-built input) gives a zero vector instead of NaN.
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(MODEL_TYPE, MeanPoolBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolBertConfig, MeanPoolBertForSequenceClassification, exist_ok=True)


def meanpool_cross_encoder(init: str | Path, layers: int, max_length: int, device: str = "cpu") -> Any:
    """A sentence-transformers ``CrossEncoder`` with the mean-pool head over the first ``layers`` layers of ``init``.

    ``init`` is a BERT folder: the MiniLM sentence-transformers model (its encoder weights) or a
    trained cross-encoder (its ``bert.*`` weights; its [CLS] head is dropped). The head is new.
    """
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer

    base = BertConfig.from_pretrained(str(init)).to_dict()
    for k in ("model_type", "architectures", "num_labels", "id2label", "label2id", "transformers_version"):
        base.pop(k, None)
    config = MeanPoolBertConfig(**{**base, "num_hidden_layers": layers, "num_labels": 1,
                                   "architectures": ["MeanPoolBertForSequenceClassification"]})
    # from_pretrained maps both key layouts (bare encoder keys and ``bert.``-prefixed ones) onto
    # ``self.bert``; the head (and a dropped [CLS] classifier) are reported as new / unused.
    model = MeanPoolBertForSequenceClassification.from_pretrained(str(init), config=config)
    tok = AutoTokenizer.from_pretrained(str(init))
    with tempfile.TemporaryDirectory(prefix="ragfix-meanpool-") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return CrossEncoder(tmp, num_labels=1, max_length=max_length, device=device)
