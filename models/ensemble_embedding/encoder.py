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


class TorchEncoder:
    """The encoder network in torch (CPU, or the instance's GPU)."""

    def setup(self, ctx: pbkit.SetupContext) -> None:
        import torch
        from network import load_encoder

        self.torch = torch
        self.device = torch.device(ctx.device)
        checkpoint = resolve_checkpoint(ctx.parameter("checkpoint", ""))
        self.network = load_encoder(checkpoint, EMBEDDING_DIM).to(self.device)

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
