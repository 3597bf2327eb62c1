"""Torch modules for the two Whisper submodels, with fixed tensor names for Triton, ONNX and TensorRT.

``whisper_encoder`` (:class:`CrossKVEncoder`)
    ``input_features`` FP32 ``[B, n_mels, 3000]`` -> ``cross_key_values`` FP32 ``[B, L, 2, H, 1500, dh]``.
    The encoder runs once per clip and also applies every decoder layer's cross-attention key/value projections,
    so decoding steps never recompute them (index 0 of axis 2 holds keys, 1 holds values).

``whisper_decoder`` (:class:`DecoderStep`)
    ``input_ids`` INT64 ``[B, T]``, ``past_key_values`` FP32 ``[B, L, 2, H, P, dh]`` (``P = 0`` on the first call),
    ``cross_key_values`` FP32 ``[B, L, 2, H, 1500, dh]`` -> ``logits`` FP32 ``[B, vocab]`` (last position only) and
    ``present_key_values`` FP32 ``[B, L, 2, H, P + T, dh]``. Token positions start at ``P``, so every row of a batch
    must be at the same position (the decoding loop keeps them aligned).

Every tensor is batch-first, so either submodel can be configured with Triton batching (``max_batch_size > 0``).

Both wrap the submodules of a Hugging Face ``WhisperForConditionalGeneration`` (so the arithmetic is the one
``generate`` runs) and feed the decoder through transformers' ``DynamicCache`` / ``EncoderDecoderCache``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache, WhisperForConditionalGeneration

ENCODER_INPUTS = ("input_features",)
ENCODER_OUTPUTS = ("cross_key_values",)
DECODER_INPUTS = ("input_ids", "past_key_values", "cross_key_values")
DECODER_OUTPUTS = ("logits", "present_key_values")
ONNX_OPSET = 18

NumpyFn = Callable[..., dict[str, np.ndarray]]


def load_whisper(
    path: str | os.PathLike[str], attn_implementation: str | None = None
) -> WhisperForConditionalGeneration:
    """Load a Hugging Face Whisper checkpoint directory in float32 eval mode."""
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = WhisperForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32, **kwargs)
    return model.eval()


class CrossKVEncoder(nn.Module):
    """``input_features [B, n_mels, 3000]`` -> ``cross_key_values [B, L, 2, H, S, dh]``."""

    def __init__(self, model: WhisperForConditionalGeneration) -> None:
        super().__init__()
        config = model.config
        self.encoder = model.model.encoder
        self.cross_attentions = nn.ModuleList(layer.encoder_attn for layer in model.model.decoder.layers)
        self.num_heads = config.decoder_attention_heads
        self.head_dim = config.d_model // config.decoder_attention_heads

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: object) -> CrossKVEncoder:
        """Build from a checkpoint directory (keyword arguments go to :func:`load_whisper`)."""
        return cls(load_whisper(path, **kwargs)).eval()  # type: ignore[arg-type]

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_features).last_hidden_state
        shape = (hidden.shape[0], -1, self.num_heads, self.head_dim)
        layers = [
            torch.stack(
                [
                    attention.k_proj(hidden).view(shape).transpose(1, 2),
                    attention.v_proj(hidden).view(shape).transpose(1, 2),
                ],
                dim=1,
            )
            for attention in self.cross_attentions
        ]
        return torch.stack(layers, dim=1)


class DecoderStep(nn.Module):
    """One cached decoder call: ``(input_ids, past_key_values, cross_key_values) -> (logits, present_key_values)``."""

    def __init__(self, model: WhisperForConditionalGeneration) -> None:
        super().__init__()
        config = model.config
        self.decoder = model.model.decoder
        self.proj_out = model.proj_out
        self.num_layers = config.decoder_layers
        self.num_heads = config.decoder_attention_heads
        self.head_dim = config.d_model // config.decoder_attention_heads

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: object) -> DecoderStep:
        """Build from a checkpoint directory (keyword arguments go to :func:`load_whisper`)."""
        return cls(load_whisper(path, **kwargs)).eval()  # type: ignore[arg-type]

    def forward(
        self, input_ids: torch.Tensor, past_key_values: torch.Tensor, cross_key_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self_cache, cross_cache = DynamicCache(), DynamicCache()
        for layer in range(self.num_layers):
            self_cache.update(past_key_values[:, layer, 0], past_key_values[:, layer, 1], layer)
            cross_cache.update(cross_key_values[:, layer, 0], cross_key_values[:, layer, 1], layer)
        cache = EncoderDecoderCache(self_cache, cross_cache)
        for layer in range(self.num_layers):
            cache.is_updated[layer] = True  # cross-attention reads its keys/values from the cache
        # The cross-attention layers only check that encoder states are present; with the cache marked as
        # updated they use the precomputed keys/values, so a stand-in tensor of the right rank is enough.
        stand_in = cross_key_values[:, 0, 0, 0]
        output = self.decoder(
            input_ids=input_ids, encoder_hidden_states=stand_in, past_key_values=cache, use_cache=True
        )
        logits = self.proj_out(output.last_hidden_state[:, -1])
        present = torch.stack(
            [torch.stack([layer.keys, layer.values], dim=1) for layer in cache.self_attention_cache.layers],
            dim=1,
        )
        return logits, present

    def empty_past(self, batch_size: int) -> torch.Tensor:
        """The ``past_key_values`` of the first call: ``[B, L, 2, H, 0, dh]``."""
        return torch.zeros(batch_size, self.num_layers, 2, self.num_heads, 0, self.head_dim)


# ----------------------------------------------------------------------------------------------- numpy callables


def torch_callables(
    path_or_model: str | os.PathLike[str] | WhisperForConditionalGeneration,
) -> tuple[NumpyFn, NumpyFn]:
    """``(encode, decode_step)`` running the torch modules with numpy in and out, like BLS handles."""
    model = path_or_model if isinstance(path_or_model, nn.Module) else load_whisper(path_or_model)
    encoder, decoder = CrossKVEncoder(model).eval(), DecoderStep(model).eval()

    def encode(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            cross = encoder(torch.from_numpy(np.ascontiguousarray(inputs["input_features"])))
        return {"cross_key_values": cross.numpy()}

    def decode_step(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in DECODER_INPUTS]
        with torch.inference_mode():
            logits, present = decoder(*tensors)
        return {"logits": logits.numpy(), "present_key_values": present.numpy()}

    return encode, decode_step


def onnx_callables(
    encoder_path: str | os.PathLike[str], decoder_path: str | os.PathLike[str], threads: int | None = None
) -> tuple[NumpyFn, NumpyFn]:
    """``(encode, decode_step)`` running exported ONNX files on onnxruntime (CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
    decoder = ort.InferenceSession(str(decoder_path), options, providers=providers)

    def encode(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (cross,) = encoder.run(list(ENCODER_OUTPUTS), {"input_features": inputs["input_features"]})
        return {"cross_key_values": cross}

    def decode_step(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {name: inputs[name] for name in DECODER_INPUTS}
        logits, present = decoder.run(list(DECODER_OUTPUTS), feeds)
        return {"logits": logits, "present_key_values": present}

    return encode, decode_step


# ----------------------------------------------------------------------------------------------- ONNX export


def example_inputs(
    model: WhisperForConditionalGeneration, batch_size: int = 2, past: int = 3, tokens: int = 2
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Example ``(input_features, (input_ids, past_key_values, cross_key_values))`` for tracing/export."""
    config = model.config
    heads = config.decoder_attention_heads
    head_dim = config.d_model // heads
    frames = 2 * config.max_source_positions
    features = torch.randn(batch_size, config.num_mel_bins, frames)
    kv = (batch_size, config.decoder_layers, 2, heads)
    input_ids = torch.randint(0, config.vocab_size, (batch_size, tokens))
    past_key_values = torch.randn(*kv, past, head_dim)
    cross_key_values = torch.randn(*kv, config.max_source_positions, head_dim)
    return features, (input_ids, past_key_values, cross_key_values)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the exporters' expected notes (tracer shape checks, cache bookkeeping, missing torchvision).

    Whether the exported graphs generalise over batch, token and past lengths is checked by the tests.
    """
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)", FutureWarning)
            warnings.filterwarnings("ignore", r"# The axis name: .* will not be used", UserWarning)
            yield
    finally:
        registry_log.setLevel(level)


def export_onnx(
    path_or_model: str | os.PathLike[str] | WhisperForConditionalGeneration,
    encoder_file: str | os.PathLike[str],
    decoder_file: str | os.PathLike[str],
    opset: int = ONNX_OPSET,
    dynamo: bool = True,
) -> tuple[Path, Path]:
    """Export both submodels to single-file ONNX (weights embedded) with dynamic batch, token and past axes.

    Dynamic axes: ``batch`` on every tensor, ``tokens`` on ``input_ids``, ``past`` on ``past_key_values`` (it may
    be 0) and their sum on ``present_key_values``. Files can be renamed freely (no external data). ``dynamo``
    picks the ``torch.export`` exporter (default); ``False`` uses the TorchScript tracer.
    """
    model = path_or_model if isinstance(path_or_model, nn.Module) else load_whisper(path_or_model)
    features, decoder_args = example_inputs(model)
    encoder_out, decoder_out = Path(encoder_file), Path(decoder_file)
    encoder_out.parent.mkdir(parents=True, exist_ok=True)
    decoder_out.parent.mkdir(parents=True, exist_ok=True)
    max_tokens = model.config.max_target_positions
    if dynamo:
        from torch.export import Dim

        batch, tokens = Dim("batch", min=1, max=1024), Dim("tokens", min=1, max=max_tokens)
        past = Dim("past", min=0, max=max_tokens - 1)
        encoder_axes: dict[str, Any] = {"dynamic_shapes": {"input_features": {0: batch}}}
        decoder_axes: dict[str, Any] = {
            "dynamic_shapes": {
                "input_ids": {0: batch, 1: tokens},
                "past_key_values": {0: batch, 4: past},
                "cross_key_values": {0: batch},
            }
        }
        options: dict[str, Any] = {"dynamo": True, "external_data": False, "verbose": False}
    else:
        encoder_axes = {"dynamic_axes": {"input_features": {0: "batch"}, "cross_key_values": {0: "batch"}}}
        decoder_axes = {
            "dynamic_axes": {
                "input_ids": {0: "batch", 1: "tokens"},
                "past_key_values": {0: "batch", 4: "past"},
                "cross_key_values": {0: "batch"},
                "logits": {0: "batch"},
                "present_key_values": {0: "batch", 4: "total"},
            }
        }
        options = {"dynamo": False}
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(
            CrossKVEncoder(model).eval(),
            (features,),
            str(encoder_out),
            input_names=list(ENCODER_INPUTS),
            output_names=list(ENCODER_OUTPUTS),
            opset_version=opset,
            **encoder_axes,
            **options,
        )
        torch.onnx.export(
            DecoderStep(model).eval(),
            decoder_args,
            str(decoder_out),
            input_names=list(DECODER_INPUTS),
            output_names=list(DECODER_OUTPUTS),
            opset_version=opset,
            **decoder_axes,
            **options,
        )
    return encoder_out, decoder_out
