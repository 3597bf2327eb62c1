"""Encoder step: token ids -> ``last_hidden_state``, served as a submodel with two variants.

* ``PythonVariant(TorchEncoder)`` (the default): a Python-backend model running the
  checkpoint with torch. It runs on any Triton, including the CPU-only server bundled with
  nvidia-pytriton, which has no ONNX Runtime backend; that is why it is listed first.
* ``Onnx("onnx/model.onnx")``: the same network exported by ``export_onnx.py`` and served by
  Triton's ONNX Runtime backend. Build it with ``pbkit build models/ --variant onnx`` on a
  Triton that has that backend (for example the NGC tritonserver container).

Both variants trim each batch to its longest real sentence (see ``network.py``), so their
``last_hidden_state`` is ``[batch, longest, hidden]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from common import CHECKPOINT, EMBEDDING_DIM, MAX_BATCH_SIZE, resolve_checkpoint

import pbkit

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_token_inputs(
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    token_type_ids: np.ndarray,
    *,
    vocab_size: int,
    type_vocab_size: int | None = None,
    max_positions: int | None = None,
) -> None:
    """Raise ``pbkit.InvalidArgument`` unless the tensors look like the tokenizer step's output.

    The three must have one length with at least one position; ids and token types must lie in
    the checkpoint's vocabularies; the mask must be 1s then 0s on each row (the encoder trims
    the batch to its longest row), with no row longer than the checkpoint's position limit.
    """
    lengths = {
        name: array.shape[1]
        for name, array in zip(TOKEN_INPUTS, (input_ids, attention_mask, token_type_ids), strict=True)
    }
    if len(set(lengths.values())) != 1:
        raise pbkit.InvalidArgument(
            f"input_ids, attention_mask and token_type_ids must have one length, got {lengths}"
        )
    if input_ids.shape[1] == 0:
        raise pbkit.InvalidArgument("input_ids: expected at least one token position, got none")
    _check_range("input_ids", input_ids, vocab_size)
    if type_vocab_size is not None:
        _check_range("token_type_ids", token_type_ids, type_vocab_size)
    if not np.isin(attention_mask, (0, 1)).all():
        raise pbkit.InvalidArgument("attention_mask: expected only 0 and 1")
    if (np.diff(attention_mask, axis=1) > 0).any():
        raise pbkit.InvalidArgument(
            "attention_mask: each row must be 1s followed by 0s (padding on the right)"
        )
    longest = int(attention_mask.sum(axis=1).max())
    if max_positions is not None and longest > max_positions:
        raise pbkit.InvalidArgument(
            f"attention_mask: a row has {longest} tokens; the encoder takes at most {max_positions}"
        )


def _check_range(name: str, array: np.ndarray, size: int) -> None:
    outside = array[(array < 0) | (array >= size)]
    if outside.size:
        raise pbkit.InvalidArgument(f"{name}: values must be in 0..{size - 1}, got {int(outside[0])}")


class TorchEncoder:
    """The encoder network in torch (CPU, or the instance's GPU)."""

    def setup(self, ctx: pbkit.SetupContext) -> None:
        import torch
        from network import load_encoder

        self.torch = torch
        self.device = torch.device(ctx.device)
        checkpoint = resolve_checkpoint(ctx.parameter("checkpoint", ""))
        self.network = load_encoder(checkpoint, EMBEDDING_DIM).to(self.device)
        config = self.network.model.config
        self.vocab_size = int(config.vocab_size)
        self.type_vocab_size = (
            getattr(config, "type_vocab_size", None) if self.network.takes_token_types else None
        )
        self.max_positions = getattr(config, "max_position_embeddings", None)

    def validate(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> None:
        check_token_inputs(
            input_ids,
            attention_mask,
            token_type_ids,
            vocab_size=self.vocab_size,
            type_vocab_size=self.type_vocab_size,
            max_positions=self.max_positions,
        )

    def predict(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> Any:
        tensors = [
            self.torch.tensor(array, dtype=self.torch.int64, device=self.device)
            for array in (input_ids, attention_mask, token_type_ids)
        ]
        with self.torch.inference_mode():
            hidden = self.network(*tensors)
        return {"last_hidden_state": hidden.float().cpu().numpy()}


encoder = pbkit.Submodel(
    "embedding_encoder",
    inputs=[pbkit.Input(name, "INT64", [-1]) for name in TOKEN_INPUTS],
    outputs=[pbkit.Output("last_hidden_state", "FP32", [-1, EMBEDDING_DIM])],
    max_batch_size=MAX_BATCH_SIZE,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=2000),
    instances=1,
    parameters={"checkpoint": CHECKPOINT},
    variants=[pbkit.PythonVariant(TorchEncoder), pbkit.Onnx("onnx/model.onnx")],
)
