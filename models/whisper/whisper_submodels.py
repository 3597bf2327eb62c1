"""The two Whisper networks as pbkit submodels, called by the ``whisper`` orchestrators through BLS.

``whisper_encoder``
    ``input_features`` FP32 ``[B, n_mels, 3000]`` → ``cross_key_values`` FP32 ``[B, L, 2, H, 1500, dh]``
    (the encoder output already projected to every decoder layer's cross-attention keys and values).
``whisper_decoder``
    ``input_ids`` INT64 ``[B, T]``, ``past_key_values`` FP32 ``[B, L, 2, H, P, dh]`` (``P = 0`` on the first
    call) and ``cross_key_values`` → ``logits`` FP32 ``[B, vocab]`` (last position) and ``present_key_values``
    FP32 ``[B, L, 2, H, P + T, dh]``.

``n_mels``, ``L``, ``H``, ``dh`` and ``vocab`` depend on the checkpoint, so they are variable (-1) in the
configs and checked by the Python variants' ``validate``. Both submodels batch (``max_batch_size`` 16, the
orchestrators' too) with Triton's dynamic batcher: the orchestrator sends its whole batch in one call, and
calls of several orchestrator instances with equal shapes may be merged.

Variants, in the order ``pbkit build`` tries them (``--variant onnx`` / ``--variant tensorrt`` asks for another):

* a Python variant running the checkpoint's network in torch (``networks.CrossKVEncoder`` /
  ``networks.DecoderStep``): it runs on any Triton, including the CPU-only server bundled with
  nvidia-pytriton, which has no ONNX Runtime or TensorRT backend;
* ``onnx/whisper_encoder.onnx`` / ``onnx/whisper_decoder.onnx`` for Triton's ONNX Runtime backend, written by
  ``python models/whisper/export_variants.py`` (single files, weights embedded, dynamic batch/tokens/past);
* ``engines/whisper_encoder.plan`` / ``engines/whisper_decoder.plan`` for the TensorRT backend, built on the
  serving GPU from the ONNX files by the ``trtexec`` commands that ``export_variants.py --trtexec`` prints.

The two folders are ``onnx`` and ``engines`` next to this file unless ``PBKIT_WHISPER_ONNX_DIR`` /
``PBKIT_WHISPER_ENGINES_DIR`` name others when the declarations are imported (at build time).

Config parameters, shared by the orchestrators and the Python variants:

* ``checkpoint``: a Hugging Face Whisper checkpoint folder. Its default is fixed when ``pbkit build`` imports
  this file: ``PBKIT_WHISPER_CHECKPOINT`` if set, else ``whisper-tiny.en`` under ``PBKIT_CHECKPOINTS``
  (default ``<repository root>/checkpoints``), where ``scripts/prepare_checkpoints.py`` converts the real
  tiny.en weights;
* ``torch_threads``: torch's intra-op threads per model instance (``1``; ``0`` keeps torch's default).

Only numpy and pbkit are imported here; torch and transformers are imported in ``setup``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import pbkit

CHECKPOINT_ENV = "PBKIT_WHISPER_CHECKPOINT"
CHECKPOINTS_ENV = "PBKIT_CHECKPOINTS"
ONNX_DIR_ENV = "PBKIT_WHISPER_ONNX_DIR"
ENGINES_DIR_ENV = "PBKIT_WHISPER_ENGINES_DIR"
DEFAULT_CHECKPOINT_NAME = "whisper-tiny.en"
#: Rows per call, for the orchestrators and both submodels.
MAX_BATCH_SIZE = 16
#: Feature frames of a 30 s window, and encoder positions (half as many).
FEATURE_FRAMES = 3000
AUDIO_POSITIONS = 1500


def default_checkpoint() -> str:
    """The ``checkpoint`` parameter's default, computed when the declarations are imported (at build time)."""
    explicit = os.environ.get(CHECKPOINT_ENV, "").strip()
    if explicit:
        return str(Path(explicit).expanduser().resolve())
    folder = os.environ.get(CHECKPOINTS_ENV, "").strip()
    root = Path(folder).expanduser() if folder else Path(__file__).resolve().parents[2] / "checkpoints"
    return str((root / DEFAULT_CHECKPOINT_NAME).resolve())


#: Parameters of every model of the example (orchestrators and Python variants).
PARAMETERS: dict[str, str] = {"checkpoint": default_checkpoint(), "torch_threads": "1"}


def checkpoint_dir(ctx: pbkit.SetupContext) -> Path:
    """The checkpoint named by the ``checkpoint`` parameter; a clear error when it is not a Whisper checkpoint."""
    value = ctx.parameter("checkpoint", "").strip()
    if not value:
        raise ValueError(f"model '{ctx.model_name}': the 'checkpoint' parameter is empty")
    path = Path(value).expanduser()
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"model '{ctx.model_name}': {str(path)!r} is not a Whisper checkpoint (config.json and "
            f"tokenizer.json are needed); run `python scripts/prepare_checkpoints.py` or rebuild with "
            f"{CHECKPOINT_ENV}=<checkpoint folder>"
        )
    return path


def configure_torch(ctx: pbkit.SetupContext) -> Any:
    """Apply the ``torch_threads`` parameter, keep Hugging Face offline; returns the ``torch`` module."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    threads = int(ctx.parameter("torch_threads", "1"))
    if threads > 0:
        torch.set_num_threads(threads)
    # Tensors Triton hands over are read-only; the networks never write to their inputs.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    return torch


class CheckpointDims:
    """The sizes a checkpoint fixes in the submodels' variable dims."""

    def __init__(self, checkpoint: Path) -> None:
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        self.n_mels = int(config.get("num_mel_bins", 80))
        self.layers = int(config["decoder_layers"])
        self.heads = int(config["decoder_attention_heads"])
        self.head_dim = int(config["d_model"]) // self.heads
        self.vocab_size = int(config["vocab_size"])
        self.max_positions = int(config.get("max_target_positions", 448))

    def check_kv(self, name: str, array: np.ndarray, positions: int | None = None) -> None:
        """Raise ``InvalidArgument`` unless ``array`` is ``[B, L, 2, H, positions, dh]`` for this checkpoint."""
        expected = (self.layers, 2, self.heads, array.shape[4] if positions is None else positions)
        if array.shape[1:5] != expected or array.shape[5] != self.head_dim:
            want = ["B", self.layers, 2, self.heads, "P" if positions is None else positions, self.head_dim]
            raise pbkit.InvalidArgument(
                f"{name}: expected shape {want} for this checkpoint, got {list(array.shape)}"
            )


class TorchWhisperEncoder:
    """Python variant of ``whisper_encoder``: the checkpoint's audio encoder and cross-attention projections."""

    def setup(self, ctx: pbkit.SetupContext) -> None:
        torch = configure_torch(ctx)
        import networks

        checkpoint = checkpoint_dir(ctx)
        self.torch = torch
        self.device = torch.device(ctx.device)
        self.dims = CheckpointDims(checkpoint)
        self.network = networks.CrossKVEncoder.from_pretrained(checkpoint).to(self.device)

    def validate(self, input_features: np.ndarray) -> None:
        if input_features.shape[1] != self.dims.n_mels:
            raise pbkit.InvalidArgument(
                f"input_features: this checkpoint takes {self.dims.n_mels} mel bins, "
                f"got shape {list(input_features.shape)}"
            )

    def predict(self, input_features: np.ndarray) -> dict[str, Any]:
        features = self.torch.from_numpy(np.ascontiguousarray(input_features)).to(self.device)
        with self.torch.inference_mode():
            return {"cross_key_values": self.network(features)}


class TorchWhisperDecoder:
    """Python variant of ``whisper_decoder``: one cached decoder step of the checkpoint."""

    def setup(self, ctx: pbkit.SetupContext) -> None:
        torch = configure_torch(ctx)
        import networks

        checkpoint = checkpoint_dir(ctx)
        self.torch = torch
        self.device = torch.device(ctx.device)
        self.dims = CheckpointDims(checkpoint)
        self.network = networks.DecoderStep.from_pretrained(checkpoint).to(self.device)

    def validate(
        self, input_ids: np.ndarray, past_key_values: np.ndarray, cross_key_values: np.ndarray
    ) -> None:
        dims = self.dims
        outside = input_ids[(input_ids < 0) | (input_ids >= dims.vocab_size)]
        if outside.size:
            raise pbkit.InvalidArgument(
                f"input_ids: values must be in 0..{dims.vocab_size - 1}, got {int(outside[0])}"
            )
        dims.check_kv("past_key_values", past_key_values)
        dims.check_kv("cross_key_values", cross_key_values, AUDIO_POSITIONS)
        total = past_key_values.shape[4] + input_ids.shape[1]
        if total > dims.max_positions:
            raise pbkit.InvalidArgument(
                f"past_key_values and input_ids reach position {total}; the decoder has {dims.max_positions}"
            )

    def predict(
        self, input_ids: np.ndarray, past_key_values: np.ndarray, cross_key_values: np.ndarray
    ) -> dict[str, Any]:
        tensors = [
            self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
            for array in (input_ids, past_key_values, cross_key_values)
        ]
        with self.torch.inference_mode():
            logits, present = self.network(*tensors)
        return {"logits": logits, "present_key_values": present}


def variant_dir(env: str, default: str) -> Path:
    """Where the files of a file variant are: the folder ``env`` names, else ``default`` next to this file."""
    value = os.environ.get(env, "").strip()
    return Path(value).expanduser().resolve() if value else Path(__file__).resolve().parent / default


def _file_variants(name: str) -> list[Any]:
    return [
        pbkit.Onnx(str(variant_dir(ONNX_DIR_ENV, "onnx") / f"{name}.onnx")),
        pbkit.TensorRT(str(variant_dir(ENGINES_DIR_ENV, "engines") / f"{name}.plan")),
    ]


#: ``[L, 2, H, positions, dh]`` after the batch axis.
_KV_DIMS = [-1, 2, -1, -1, -1]
_CROSS_DIMS = [-1, 2, -1, AUDIO_POSITIONS, -1]

encoder = pbkit.Submodel(
    "whisper_encoder",
    inputs=[pbkit.Input("input_features", "FP32", [-1, FEATURE_FRAMES])],
    outputs=[pbkit.Output("cross_key_values", "FP32", _CROSS_DIMS)],
    max_batch_size=MAX_BATCH_SIZE,
    instances=1,
    parameters=PARAMETERS,
    variants=[pbkit.PythonVariant(TorchWhisperEncoder), *_file_variants("whisper_encoder")],
)

decoder = pbkit.Submodel(
    "whisper_decoder",
    inputs=[
        pbkit.Input("input_ids", "INT64", [-1]),
        pbkit.Input("past_key_values", "FP32", _KV_DIMS),
        pbkit.Input("cross_key_values", "FP32", _CROSS_DIMS),
    ],
    outputs=[pbkit.Output("logits", "FP32", [-1]), pbkit.Output("present_key_values", "FP32", _KV_DIMS)],
    max_batch_size=MAX_BATCH_SIZE,
    instances=1,
    parameters=PARAMETERS,
    variants=[pbkit.PythonVariant(TorchWhisperDecoder), *_file_variants("whisper_decoder")],
)
