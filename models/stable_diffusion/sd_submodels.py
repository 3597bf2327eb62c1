"""The three Stable Diffusion networks as pbkit submodels, called by the orchestrators through BLS.

Each submodel has three interchangeable variants (``pbkit build`` picks the first one it can build,
``--variant onnx`` / ``--variant tensorrt`` asks for another):

* a Python variant running the checkpoint's network in torch (the default; it runs on any Triton,
  including the CPU-only server bundled with nvidia-pytriton, which has no ONNX Runtime backend);
* ``onnx/<name>.onnx``, written by ``pbkit export models/stable_diffusion/export_variants.py:targets``,
  for Triton's ONNX Runtime backend;
* ``engines/<name>.plan``, built from that ONNX file by the ``trtexec`` command the same export prints.

The IO names follow NVIDIA's TensorRT Stable Diffusion demo (see ``networks.py``); every submodel has
``max_batch_size: 0``, so the batch dimension is part of the dims: the orchestrator sends whole batches
(the UNet gets the unconditional and conditional halves of all prompts in one call).

Configuration (config parameters, shared by the orchestrators and the Python variants):

* ``checkpoint``: a diffusers checkpoint folder. Its default is fixed when ``pbkit build`` runs: the
  ``PBKIT_SD_CHECKPOINT`` environment variable, else ``sd-tiny`` under ``PBKIT_CHECKPOINTS`` (default
  ``<repository root>/checkpoints``), where ``scripts/prepare_checkpoints.py`` writes the tiny random one;
* ``torch_threads``: torch's intra-op threads per model instance (``1``; ``0`` keeps torch's default).

The text hidden size in the text encoder's and UNet's dims is read from that checkpoint at build time too
(768 for SD 1.x, 32 for the tiny one; ``-1``, any size, when the checkpoint is not there yet): exported
ONNX and TensorRT graphs have it fixed.

This module only imports numpy and pbkit: torch and diffusers are imported in ``setup``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import pbkit

CHECKPOINT_ENV = "PBKIT_SD_CHECKPOINT"
CHECKPOINTS_ENV = "PBKIT_CHECKPOINTS"
TINY_CHECKPOINT_NAME = "sd-tiny"
#: Token ids per prompt (CLIP's context length, the same for every Stable Diffusion 1.x/2.x checkpoint).
TEXT_LENGTH = 77
#: Latent channels of Stable Diffusion 1.x/2.x (and of the tiny checkpoint).
LATENT_CHANNELS = 4
#: Name of the counter of rows each network has processed (Triton's ``/metrics``, label ``network``).
ROWS_METRIC = "stable_diffusion_network_rows"


def default_checkpoint() -> str:
    """The ``checkpoint`` parameter's default, computed when the declarations are imported (at build time)."""
    explicit = os.environ.get(CHECKPOINT_ENV, "").strip()
    if explicit:
        return str(Path(explicit).expanduser().resolve())
    folder = os.environ.get(CHECKPOINTS_ENV, "").strip()
    root = Path(folder).expanduser() if folder else Path(__file__).resolve().parents[2] / "checkpoints"
    return str((root / TINY_CHECKPOINT_NAME).resolve())


def text_hidden_size(checkpoint: str | Path) -> int:
    """The text encoder's hidden size from ``checkpoint/text_encoder/config.json``; -1 when unreadable."""
    try:
        config = json.loads((Path(checkpoint) / "text_encoder" / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


#: Parameters of every model of the example (orchestrators and Python variants).
PARAMETERS: dict[str, str] = {"checkpoint": default_checkpoint(), "torch_threads": "1"}
#: ``D`` of ``text_embeddings`` [B, 77, D] and ``encoder_hidden_states`` [2B, 77, D].
TEXT_HIDDEN_SIZE = text_hidden_size(PARAMETERS["checkpoint"])


def checkpoint_dir(ctx: pbkit.SetupContext) -> Path:
    """The checkpoint named by the ``checkpoint`` parameter; a clear error when it is not a checkpoint."""
    value = ctx.parameter("checkpoint", "").strip()
    if not value:
        raise ValueError(f"model '{ctx.model_name}': the 'checkpoint' parameter is empty")
    path = Path(value).expanduser()
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"model '{ctx.model_name}': {str(path)!r} is not a diffusers checkpoint (no model_index.json); "
            f"write the tiny one with `python models/stable_diffusion/tiny_checkpoint.py {path}` or rebuild "
            f"with {CHECKPOINT_ENV}=<checkpoint folder>"
        )
    return path


def configure_torch(ctx: pbkit.SetupContext) -> None:
    """Apply the ``torch_threads`` parameter and keep the Hugging Face libraries offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    threads = int(ctx.parameter("torch_threads", "1"))
    if threads > 0:
        torch.set_num_threads(threads)


class _RowCounter:
    """Counts the rows a network processed in Triton's custom metric :data:`ROWS_METRIC` (when served)."""

    def __init__(self, network: str) -> None:
        self.metric: Any = None
        try:
            import triton_python_backend_utils as pb_utils
        except ImportError:  # run outside Triton (unit tests)
            return
        self.family = pb_utils.MetricFamily(
            name=ROWS_METRIC,
            description="Rows (prompts, or prompt halves for the UNet) run through each Stable Diffusion network",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.metric = self.family.Metric(labels={"network": network})

    def add(self, rows: int) -> None:
        if self.metric is not None:
            self.metric.increment(float(rows))


class TorchNetworkVariant:
    """Python variant base: one network of the checkpoint in torch, on the instance's device.

    With ``max_batch_size: 0`` the runtime hands ``predict`` a leading axis of stacked requests; each is
    run on its own and the outputs are stacked back.
    """

    #: The network in ``networks.NETWORK_NAMES`` this variant runs.
    network = ""

    def setup(self, ctx: pbkit.SetupContext) -> None:
        checkpoint = checkpoint_dir(ctx)
        configure_torch(ctx)
        import networks
        import torch

        self.torch = torch
        self.device = torch.device(ctx.device)
        self.module = networks.load_network(self.network, checkpoint).to(self.device)
        self.dims = networks.ModelDims.from_checkpoint(checkpoint)
        self.spec = networks.network_specs(self.dims)[self.network]
        self.rows = _RowCounter(self.network)
        text_config = json.loads((checkpoint / "text_encoder" / "config.json").read_text(encoding="utf-8"))
        self.vocab_size = int(text_config["vocab_size"])

    def validate(self, **inputs: np.ndarray) -> None:
        """Refuse (INVALID_ARG) what the network cannot run, before it runs: an empty tensor, or a request
        outside the network's own limits (:meth:`check`)."""
        for name, array in inputs.items():
            if array.size == 0:
                raise pbkit.InvalidArgument(
                    f"{self.network} input '{name}' is empty: shape {list(array.shape[1:])}"
                )
        self.check(**{name: array[0] for name, array in inputs.items()})

    def check(self, **inputs: np.ndarray) -> None:
        """Network-specific checks of one request (its tensors without the stacking axis)."""

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on each stacked request of ``inputs`` (numpy in, numpy out)."""
        stacked = len(next(iter(inputs.values())))
        outputs = []
        for index in range(stacked):
            tensors = [
                self.torch.from_numpy(np.ascontiguousarray(inputs[name][index])).to(self.device)
                for name in self.spec.input_names
            ]
            with self.torch.inference_mode():
                output = self.module(*tensors)
            outputs.append(output.float().cpu().numpy())
            self.rows.add(int(tensors[0].shape[0]))
        return {self.spec.output_names[0]: np.stack(outputs)}


class TorchTextEncoder(TorchNetworkVariant):
    """CLIP text encoder in torch: ``input_ids`` → ``text_embeddings``."""

    network = "text_encoder"

    def check(self, input_ids: np.ndarray) -> None:
        outside = input_ids[(input_ids < 0) | (input_ids >= self.vocab_size)]
        if outside.size:
            raise pbkit.InvalidArgument(
                f"text_encoder input 'input_ids': token ids must be in 0..{self.vocab_size - 1}, got {int(outside[0])}"
            )

    def predict(self, input_ids: np.ndarray) -> dict[str, np.ndarray]:
        return self.run(input_ids=input_ids)


class TorchUNet(TorchNetworkVariant):
    """UNet noise prediction in torch: ``sample``, ``timestep``, ``encoder_hidden_states`` → ``latent``."""

    network = "unet"

    def check(self, sample: np.ndarray, timestep: np.ndarray, encoder_hidden_states: np.ndarray) -> None:
        if len(sample) != len(encoder_hidden_states):
            raise pbkit.InvalidArgument(
                f"unet inputs 'sample' and 'encoder_hidden_states' must have the same rows, got "
                f"{len(sample)} and {len(encoder_hidden_states)}"
            )
        factor = self.dims.unet_downsample_factor
        height, width = sample.shape[-2:]
        if height % factor or width % factor:
            raise pbkit.InvalidArgument(
                f"unet input 'sample': the latent height and width must be multiples of {factor} "
                f"(the UNet halves them {factor.bit_length() - 1} times), got {height} x {width}"
            )

    def predict(
        self, sample: np.ndarray, timestep: np.ndarray, encoder_hidden_states: np.ndarray
    ) -> dict[str, np.ndarray]:
        return self.run(sample=sample, timestep=timestep, encoder_hidden_states=encoder_hidden_states)


class TorchVaeDecoder(TorchNetworkVariant):
    """VAE decoder in torch: ``latent`` (already divided by the scaling factor) → ``images`` in [-1, 1]."""

    network = "vae_decoder"

    def predict(self, latent: np.ndarray) -> dict[str, np.ndarray]:
        return self.run(latent=latent)


def _file_variants(name: str) -> list[Any]:
    return [pbkit.Onnx(f"onnx/{name}.onnx"), pbkit.TensorRT(f"engines/{name}.plan")]


text_encoder = pbkit.Submodel(
    "text_encoder",
    inputs=[pbkit.Input("input_ids", "INT32", [-1, TEXT_LENGTH])],
    outputs=[pbkit.Output("text_embeddings", "FP32", [-1, TEXT_LENGTH, TEXT_HIDDEN_SIZE])],
    parameters=PARAMETERS,
    variants=[pbkit.PythonVariant(TorchTextEncoder), *_file_variants("text_encoder")],
)

unet = pbkit.Submodel(
    "unet",
    inputs=[
        pbkit.Input("sample", "FP32", [-1, LATENT_CHANNELS, -1, -1]),
        pbkit.Input("timestep", "FP32", [1]),
        pbkit.Input("encoder_hidden_states", "FP32", [-1, TEXT_LENGTH, TEXT_HIDDEN_SIZE]),
    ],
    outputs=[pbkit.Output("latent", "FP32", [-1, LATENT_CHANNELS, -1, -1])],
    parameters=PARAMETERS,
    variants=[pbkit.PythonVariant(TorchUNet), *_file_variants("unet")],
)

vae_decoder = pbkit.Submodel(
    "vae_decoder",
    inputs=[pbkit.Input("latent", "FP32", [-1, LATENT_CHANNELS, -1, -1])],
    outputs=[pbkit.Output("images", "FP32", [-1, 3, -1, -1])],
    parameters=PARAMETERS,
    variants=[pbkit.PythonVariant(TorchVaeDecoder), *_file_variants("vae_decoder")],
)
