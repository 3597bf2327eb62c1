"""The encoder network, shared by the Python variant and the ONNX export.

:class:`TrimmedEncoder` wraps a Hugging Face encoder (BERT, MiniLM, MPNet, ...). Its inputs
are padded to the tokenizer's fixed length, so that Triton's dynamic batcher can group any
requests; before running the transformer it cuts the batch down to the longest real
sequence in it (the largest ``attention_mask`` row sum). Padding therefore costs no compute:
a batch of short sentences runs at their length, not at the fixed one. The cut is written
with tensor-valued slice bounds, so it stays dynamic when traced into ONNX.

The output ``last_hidden_state`` has that trimmed length; every position past it is padding
(mask 0), which the pooling step ignores.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch


class TrimmedEncoder(torch.nn.Module):
    """A Hugging Face encoder that runs only up to the longest real sequence of the batch."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.takes_token_types = "token_type_ids" in inspect.signature(model.forward).parameters

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        length = attention_mask.sum(dim=1).max().clamp(min=1)
        inputs = {"input_ids": input_ids[:, :length], "attention_mask": attention_mask[:, :length]}
        if self.takes_token_types:
            inputs["token_type_ids"] = token_type_ids[:, :length]
        return self.model(**inputs).last_hidden_state


def load_encoder(checkpoint: Path, hidden_size: int) -> TrimmedEncoder:
    """Load the checkpoint's encoder (float32, eval mode); its hidden size must be ``hidden_size``."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(checkpoint), dtype=torch.float32)
    actual = getattr(model.config, "hidden_size", None)
    if actual != hidden_size:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} has hidden size {actual}, but the models are declared with "
            f"EMBEDDING_DIM = {hidden_size}; change EMBEDDING_DIM in common.py and build again"
        )
    return TrimmedEncoder(model).eval()
