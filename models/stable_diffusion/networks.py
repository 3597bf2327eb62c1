"""The three Stable Diffusion networks behind the TensorRT-demo IO names, plus ONNX export and TensorRT commands.

Submodels (Triton ``max_batch_size: 0``: every shape below includes its batch dimension; ``B`` is the number of
prompt rows, ``2B`` the unconditional + conditional halves of classifier-free guidance, ``D`` the text hidden
size, ``C`` the latent channels, ``f`` the VAE scale factor, ``h = H / f``, ``w = W / f``):

=============  ==========================  =====  ====================  ===================  =====
network        input                       dtype  shape                 output               shape
=============  ==========================  =====  ====================  ===================  =====
text_encoder   ``input_ids``               INT32  [B, 77]               ``text_embeddings``  [B, 77, D] FP32
unet           ``sample``                  FP32   [2B, C, h, w]         ``latent``           [2B, C, h, w] FP32
               ``timestep``                FP32   [1]
               ``encoder_hidden_states``   FP32   [2B, 77, D]
vae_decoder    ``latent``                  FP32   [B, C, h, w]          ``images``           [B, 3, H, W] FP32
=============  ==========================  =====  ====================  ===================  =====

``text_embeddings`` is the CLIP ``last_hidden_state`` (after the final layer norm). ``latent`` is the UNet's
noise prediction. The VAE decoder is a pure decoder: it expects latents already divided by the VAE
``scaling_factor`` (0.18215 for SD 1.x) and returns images in [-1, 1]; both the ``1 / scaling_factor`` step and
the mapping to uint8 happen in the orchestrator (``pipeline.py``), as in the TensorRT demo.

Each network loads with ``from_pretrained(checkpoint/subfolder)`` (real or tiny checkpoints alike), runs in
torch, and exports to ONNX with dynamic batch (and latent/image height and width). :func:`trtexec_command`
turns the same shape information into a ``trtexec`` build line with ``--minShapes/--optShapes/--maxShapes``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TEXT_ENCODER = "text_encoder"
UNET = "unet"
VAE_DECODER = "vae_decoder"
NETWORK_NAMES: tuple[str, ...] = (TEXT_ENCODER, UNET, VAE_DECODER)
#: Checkpoint subfolder each network loads from.
SUBFOLDERS: dict[str, str] = {TEXT_ENCODER: "text_encoder", UNET: "unet", VAE_DECODER: "vae"}
#: Triton datatype name → numpy dtype.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {"INT32": np.dtype(np.int32), "FP32": np.dtype(np.float32)}
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class TensorSpec:
    """One submodel input or output: Triton name, Triton datatype, shape (-1 marks a dynamic dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    #: Symbolic name of each dynamic dimension (index → name), used for ONNX dynamic axes.
    dynamic_axes: tuple[tuple[int, str], ...] = ()

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of this tensor."""
        return NUMPY_DTYPES[self.datatype]


@dataclass(frozen=True)
class NetworkSpec:
    """Inputs and outputs of one submodel."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        """Input names in positional order (the order of the torch ``forward`` arguments)."""
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Output names in order."""
        return [spec.name for spec in self.outputs]


@dataclass(frozen=True)
class ModelDims:
    """The sizes the IO shapes depend on, read from a checkpoint's config files."""

    text_hidden_size: int
    latent_channels: int
    vae_scale_factor: int
    #: How many times the UNet halves the latent: latent sides must be a multiple of this for traced exports.
    unet_downsample_factor: int
    vae_scaling_factor: float
    default_sample_size: int
    max_length: int = 77

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path) -> ModelDims:
        """Read the dimensions from ``text_encoder/``, ``unet/`` and ``vae/`` config.json (no weights loaded)."""
        root = Path(checkpoint)
        text = _read_json(root / "text_encoder" / "config.json")
        unet = _read_json(root / "unet" / "config.json")
        vae = _read_json(root / "vae" / "config.json")
        sample_size = unet.get("sample_size", 64)
        return cls(
            text_hidden_size=int(text["hidden_size"]),
            latent_channels=int(unet.get("in_channels", 4)),
            vae_scale_factor=2 ** (len(vae["block_out_channels"]) - 1),
            unet_downsample_factor=2 ** (len(unet["block_out_channels"]) - 1),
            vae_scaling_factor=float(vae.get("scaling_factor", 0.18215)),
            default_sample_size=int(sample_size if isinstance(sample_size, int) else sample_size[0]),
            max_length=int(text.get("max_position_embeddings", 77)),
        )


def network_specs(dims: ModelDims) -> dict[str, NetworkSpec]:
    """The IO specification of the three submodels for checkpoint dimensions ``dims``."""
    channels, hidden, length = dims.latent_channels, dims.text_hidden_size, dims.max_length
    batch = ((0, "batch"),)
    latent_axes = ((0, "batch"), (2, "latent_height"), (3, "latent_width"))
    return {
        TEXT_ENCODER: NetworkSpec(
            TEXT_ENCODER,
            inputs=(TensorSpec("input_ids", "INT32", (-1, length), batch),),
            outputs=(TensorSpec("text_embeddings", "FP32", (-1, length, hidden), batch),),
        ),
        UNET: NetworkSpec(
            UNET,
            inputs=(
                TensorSpec("sample", "FP32", (-1, channels, -1, -1), latent_axes),
                TensorSpec("timestep", "FP32", (1,)),
                TensorSpec("encoder_hidden_states", "FP32", (-1, length, hidden), batch),
            ),
            outputs=(TensorSpec("latent", "FP32", (-1, channels, -1, -1), latent_axes),),
        ),
        VAE_DECODER: NetworkSpec(
            VAE_DECODER,
            inputs=(TensorSpec("latent", "FP32", (-1, channels, -1, -1), latent_axes),),
            outputs=(
                TensorSpec("images", "FP32", (-1, 3, -1, -1), ((0, "batch"), (2, "height"), (3, "width"))),
            ),
        ),
    }


@dataclass(frozen=True)
class ShapeProfile:
    """Batch and image-size range an engine is built for (``batch`` counts prompts, i.e. orchestrator requests)."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 4
    min_image: tuple[int, int] = (256, 256)
    opt_image: tuple[int, int] = (512, 512)
    max_image: tuple[int, int] = (768, 768)

    def input_shapes(self, dims: ModelDims) -> dict[str, dict[str, tuple[tuple[int, ...], ...]]]:
        """``{network: {dynamic input: (min_shape, opt_shape, max_shape)}}``.

        The text encoder sees up to 2 rows per prompt (prompt and negative prompt), the UNet ``2B`` rows with
        guidance and ``B`` rows without it, the VAE decoder ``B`` rows.
        """
        channels, hidden, length = dims.latent_channels, dims.text_hidden_size, dims.max_length
        factor = dims.vae_scale_factor
        images = (self.min_image, self.opt_image, self.max_image)
        latents = [(height // factor, width // factor) for height, width in images]
        unet_batches = (self.min_batch, 2 * self.opt_batch, 2 * self.max_batch)
        text_batches = (self.min_batch, 2 * self.opt_batch, 2 * self.max_batch)
        vae_batches = (self.min_batch, self.opt_batch, self.max_batch)
        return {
            TEXT_ENCODER: {"input_ids": tuple((batch, length) for batch in text_batches)},
            UNET: {
                "sample": tuple(
                    (batch, channels, h, w) for batch, (h, w) in zip(unet_batches, latents, strict=True)
                ),
                "encoder_hidden_states": tuple((batch, length, hidden) for batch in unet_batches),
            },
            VAE_DECODER: {
                "latent": tuple(
                    (batch, channels, h, w) for batch, (h, w) in zip(vae_batches, latents, strict=True)
                )
            },
        }


def tiny_shape_profile() -> ShapeProfile:
    """A profile matching the tiny test checkpoint (images 16 to 64 pixels)."""
    return ShapeProfile(
        min_batch=1, opt_batch=1, max_batch=4, min_image=(16, 16), opt_image=(32, 32), max_image=(64, 64)
    )


def trtexec_command(
    network: str,
    onnx_path: str | Path,
    engine_path: str | Path,
    dims: ModelDims,
    profile: ShapeProfile,
    *,
    fp16: bool = True,
    extra_args: Sequence[str] = (),
) -> str:
    """A ``trtexec`` command line building ``engine_path`` from ``onnx_path`` for the shapes in ``profile``."""
    shapes = profile.input_shapes(dims)[network]
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        joined = ",".join(
            f"{name}:{'x'.join(str(size) for size in bounds[index])}" for name, bounds in shapes.items()
        )
        args.append(f"{flag}={joined}")
    if fp16:
        args.append("--fp16")
    args.extend(extra_args)
    return shlex.join(args)


# --------------------------------------------------------------------------------------------------------------
# torch modules


class TextEncoderNetwork(torch.nn.Module):
    """CLIP text model: ``input_ids`` INT32 [B, 77] → ``text_embeddings`` FP32 [B, 77, D] (last hidden state)."""

    def __init__(self, text_model: torch.nn.Module) -> None:
        super().__init__()
        self.text_model = text_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embed token ids; int32 ids are widened to int64 inside the graph."""
        return self.text_model(input_ids.to(torch.int64)).last_hidden_state


class UNetNetwork(torch.nn.Module):
    """UNet noise prediction: (``sample``, ``timestep`` [1], ``encoder_hidden_states``) → ``latent``."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """Predict the noise of every row; the single timestep is broadcast over the batch."""
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


class VaeDecoderNetwork(torch.nn.Module):
    """VAE decoder: ``latent`` (already divided by the scaling factor) → ``images`` in [-1, 1]."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode latents to images."""
        return self.vae.decode(latent, return_dict=False)[0]


def load_network(network: str, checkpoint: str | Path) -> torch.nn.Module:
    """Load one network from ``checkpoint/<subfolder>`` with ``from_pretrained``; returned in eval mode."""
    path = Path(checkpoint) / SUBFOLDERS[network]
    if network == TEXT_ENCODER:
        from transformers import CLIPTextModel

        module: torch.nn.Module = TextEncoderNetwork(CLIPTextModel.from_pretrained(path))
    elif network == UNET:
        from diffusers import UNet2DConditionModel

        module = UNetNetwork(UNet2DConditionModel.from_pretrained(path))
    elif network == VAE_DECODER:
        from diffusers import AutoencoderKL

        module = VaeDecoderNetwork(AutoencoderKL.from_pretrained(path))
    else:
        raise ValueError(f"unknown network {network!r}; expected one of {NETWORK_NAMES}")
    return module.eval()


def load_networks(checkpoint: str | Path) -> dict[str, torch.nn.Module]:
    """Load all three networks of ``checkpoint``: ``{name: torch module}``."""
    return {network: load_network(network, checkpoint) for network in NETWORK_NAMES}


# --------------------------------------------------------------------------------------------------------------
# numpy-in, numpy-out callables (the calling convention of a BLS handle)


def _check_inputs(spec: NetworkSpec, inputs: Mapping[str, np.ndarray]) -> None:
    if set(inputs) != set(spec.input_names):
        raise ValueError(f"{spec.name} expects inputs {spec.input_names}, got {sorted(inputs)}")
    for tensor in spec.inputs:
        array = inputs[tensor.name]
        if array.dtype != tensor.numpy_dtype:
            raise TypeError(f"{spec.name} input {tensor.name!r} must be {tensor.datatype}, got {array.dtype}")
        if len(array.shape) != len(tensor.shape) or any(
            want not in (-1, got) for want, got in zip(tensor.shape, array.shape, strict=True)
        ):
            raise ValueError(
                f"{spec.name} input {tensor.name!r} must have shape {list(tensor.shape)}, got {list(array.shape)}"
            )


class TorchNetwork:
    """A torch network behind the numpy calling convention: ``network(**inputs) -> {output name: array}``."""

    def __init__(self, module: torch.nn.Module, spec: NetworkSpec) -> None:
        self.module = module
        self.spec = spec

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Check names, dtypes and ranks against the spec, run the module without autograd, return numpy."""
        _check_inputs(self.spec, inputs)
        tensors = [torch.from_numpy(np.ascontiguousarray(inputs[name])) for name in self.spec.input_names]
        with torch.inference_mode():
            output = self.module(*tensors)
        return {self.spec.output_names[0]: output.float().numpy()}


class OnnxRuntimeNetwork:
    """An ONNX Runtime session behind the numpy calling convention."""

    def __init__(
        self, onnx_path: str | Path, spec: NetworkSpec, providers: Sequence[str] = ("CPUExecutionProvider",)
    ):
        import onnxruntime

        self.spec = spec
        self.session = onnxruntime.InferenceSession(str(onnx_path), providers=list(providers))

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Check the inputs against the spec and run the session."""
        _check_inputs(self.spec, inputs)
        outputs = self.session.run(self.spec.output_names, dict(inputs))
        return dict(zip(self.spec.output_names, outputs, strict=True))


def torch_networks(checkpoint: str | Path) -> dict[str, TorchNetwork]:
    """Load the three networks of ``checkpoint`` as numpy callables ``{name: TorchNetwork}``."""
    specs = network_specs(ModelDims.from_checkpoint(checkpoint))
    return {name: TorchNetwork(module, specs[name]) for name, module in load_networks(checkpoint).items()}


# --------------------------------------------------------------------------------------------------------------
# ONNX export and parity


def example_inputs(
    network: str, dims: ModelDims, batch: int = 1, image_size: tuple[int, int] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random valid inputs for ``network``: ``batch`` prompts (the UNet gets ``2 * batch`` rows) at ``image_size``."""
    rng = np.random.default_rng(seed)
    height, width = image_size or (dims.default_sample_size * dims.vae_scale_factor,) * 2
    latent_shape = (dims.latent_channels, height // dims.vae_scale_factor, width // dims.vae_scale_factor)
    if network == TEXT_ENCODER:
        ids = rng.integers(0, 49406, size=(batch, dims.max_length), dtype=np.int32)
        ids[:, 0] = 49406
        ids[:, -1] = 49407
        return {"input_ids": ids}
    if network == UNET:
        return {
            "sample": rng.standard_normal((2 * batch, *latent_shape), dtype=np.float32),
            "timestep": np.array([rng.integers(1, 1000)], dtype=np.float32),
            "encoder_hidden_states": rng.standard_normal(
                (2 * batch, dims.max_length, dims.text_hidden_size), dtype=np.float32
            ),
        }
    if network == VAE_DECODER:
        return {"latent": rng.standard_normal((batch, *latent_shape), dtype=np.float32)}
    raise ValueError(f"unknown network {network!r}; expected one of {NETWORK_NAMES}")


def export_onnx(
    network: str,
    module: torch.nn.Module,
    onnx_path: str | Path,
    dims: ModelDims,
    *,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
) -> Path:
    """Export ``module`` to ``onnx_path`` with the TensorRT-demo IO names and dynamic batch/height/width axes.

    The file is written directly under its final name (Triton's ``model.onnx``), because external weight data
    refers to it by name. ``dynamo=False`` uses the TorchScript exporter (about 1 s for the tiny networks);
    ``dynamo=True`` the torch.export-based one (slower, default in recent torch, opset ≥ 18). Weights are
    embedded unless the model exceeds the 2 GB protobuf limit. The UNet graph is traced at a latent size
    divisible by :attr:`ModelDims.unet_downsample_factor`, so it only accepts such latent sizes.
    """
    spec = network_specs(dims)[network]
    path = Path(onnx_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two prompts in the example: torch.export specializes dimensions of size 1.
    example = example_inputs(network, dims, batch=2 if dynamo else 1)
    args = tuple(torch.from_numpy(example[name]) for name in spec.input_names)
    options: dict[str, Any] = {"dynamo": dynamo, "opset_version": max(opset, 18) if dynamo else opset}
    if dynamo:
        symbols: dict[str, Any] = {}
        options["dynamic_shapes"] = {
            tensor.name: {
                axis: symbols.setdefault(label, torch.export.Dim(label))
                for axis, label in tensor.dynamic_axes
            }
            or None
            for tensor in spec.inputs
        }
        parameter_bytes = sum(
            parameter.numel() * parameter.element_size() for parameter in module.parameters()
        )
        options["external_data"] = parameter_bytes >= 2**31 - 2**27
    else:
        options["dynamic_axes"] = {
            tensor.name: dict(tensor.dynamic_axes)
            for tensor in (*spec.inputs, *spec.outputs)
            if tensor.dynamic_axes
        }
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            do_constant_folding=True,
            **options,
        )
    return path


def onnx_max_abs_diff(
    module: torch.nn.Module, onnx_path: str | Path, spec: NetworkSpec, inputs: Mapping[str, np.ndarray]
) -> float:
    """Largest absolute difference between the torch module and the ONNX Runtime session on ``inputs``."""
    expected = TorchNetwork(module, spec)(**inputs)
    actual = OnnxRuntimeNetwork(onnx_path, spec)(**inputs)
    return max(float(np.max(np.abs(actual[name] - expected[name]))) for name in spec.output_names)


def check_onnx_parity(
    network: str,
    module: torch.nn.Module,
    onnx_path: str | Path,
    dims: ModelDims,
    cases: Sequence[tuple[int, tuple[int, int]]] = ((1, (32, 32)), (3, (48, 32))),
    atol: float = 1e-4,
) -> dict[tuple[int, tuple[int, int]], float]:
    """Compare ONNX Runtime with torch for each ``(batch, (height, width))`` case; raise if any exceeds ``atol``.

    Returns the maximum absolute difference per case. Image sizes must be multiples of
    ``vae_scale_factor * unet_downsample_factor``.
    """
    spec = network_specs(dims)[network]
    differences = {}
    for batch, image_size in cases:
        inputs = example_inputs(network, dims, batch=batch, image_size=image_size, seed=batch)
        differences[(batch, image_size)] = onnx_max_abs_diff(module, onnx_path, spec, inputs)
    worst = max(differences.values())
    if worst > atol:
        raise AssertionError(
            f"{network}: ONNX Runtime differs from torch by {worst:.3g} > {atol:g}: {differences}"
        )
    return differences


def export_checkpoint_onnx(
    checkpoint: str | Path,
    repository: str | Path,
    *,
    version: str = "1",
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
) -> dict[str, Path]:
    """Export all three networks of ``checkpoint`` to ``repository/<network>/<version>/model.onnx``."""
    dims = ModelDims.from_checkpoint(checkpoint)
    paths = {}
    for network, module in load_networks(checkpoint).items():
        target = Path(repository) / network / version / "model.onnx"
        paths[network] = export_onnx(network, module, target, dims, opset=opset, dynamo=dynamo)
    return paths


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
