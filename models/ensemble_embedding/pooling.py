"""Pooling step: mean of the token embeddings under the attention mask, then L2 normalisation.

This is sentence-transformers' ``Pooling(mean)`` followed by ``Normalize``. The encoder's
``last_hidden_state`` may be shorter than the mask (it is trimmed to the longest sentence of
its batch); every position past it is padding, so the mask is cut to the same length.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
from common import EMBEDDING_DIM, MAX_BATCH_SIZE

import pbkit
from pbkit import FP32


class SentenceEmbedding(TypedDict):
    sentence_embedding: FP32[EMBEDDING_DIM]


def mean_pool_normalize(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """``[batch, tokens, dim]`` hidden states and ``[batch, >= tokens]`` mask -> unit vectors ``[batch, dim]``."""
    mask = attention_mask[:, : hidden.shape[1]].astype(np.float32)[:, :, np.newaxis]
    summed = (hidden.astype(np.float32) * mask).sum(axis=1)
    mean = summed / np.maximum(mask.sum(axis=1), np.float32(1e-9))
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    return (mean / np.maximum(norms, np.float32(1e-12))).astype(np.float32)


@pbkit.model(
    name="embedding_pooling",
    inputs=[
        pbkit.Input("last_hidden_state", "FP32", [-1, EMBEDDING_DIM], pad_value=0.0),
        pbkit.Input("attention_mask", "INT64", [-1], pad_value=0),
    ],
    max_batch_size=MAX_BATCH_SIZE,
    dynamic_batching=True,
    instances=1,
)
class Pooling:
    """Masked mean pooling and L2 normalisation of the encoder's token embeddings."""

    def validate(self, last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> None:
        tokens = last_hidden_state.shape[1]
        if attention_mask.shape[1] < tokens:
            raise pbkit.InvalidArgument(
                f"attention_mask has {attention_mask.shape[1]} positions, fewer than the {tokens} of last_hidden_state"
            )
        if not np.isin(attention_mask, (0, 1)).all():
            raise pbkit.InvalidArgument("attention_mask: expected only 0 and 1")
        if not (attention_mask[:, :tokens] == 1).any(axis=1).all():
            raise pbkit.InvalidArgument(
                "attention_mask: every row needs a 1 within the positions of last_hidden_state"
            )
        if not np.isfinite(last_hidden_state).all():
            raise pbkit.InvalidArgument("last_hidden_state: expected finite numbers, got NaN or infinity")

    def predict(self, last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> SentenceEmbedding:
        return {"sentence_embedding": mean_pool_normalize(last_hidden_state, attention_mask)}
