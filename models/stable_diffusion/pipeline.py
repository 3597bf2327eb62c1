"""Text-to-image orchestration over three submodel callables (text encoder, UNet, VAE decoder).

The pipeline never touches a network directly: it calls ``text_encoder(input_ids=...)``,
``unet(sample=..., timestep=..., encoder_hidden_states=...)`` and ``vae_decoder(latent=...)`` with numpy arrays
and reads numpy arrays back from the returned dict, exactly how a Triton BLS handle behaves (see
``networks.py`` for the IO names, shapes and dtypes). Torch is used only for the diffusers schedulers and the
seeded random generators, on the CPU.

Semantics, chosen to reproduce ``diffusers.StableDiffusionPipeline`` bit for bit on the same components:

* Prompts are tokenized to 77 ids (start, text, end, padding). A prompt or negative prompt longer than that is
  rejected with a :class:`RequestError` naming the field, never silently truncated.
* Each request draws its initial latents, shape ``[1, C, H/f, W/f]``, from its own ``torch.Generator`` seeded
  with ``SEED`` (random when absent), so an image depends only on its own request, not on what it was batched
  with. Schedulers that draw noise in ``step`` (ancestral, DDPM) get the list of per-request generators, as
  diffusers does with a list of generators.
* Classifier-free guidance applies when ``GUIDANCE_SCALE > 1`` (diffusers' rule); then the UNet runs once per
  step on ``[unconditional rows, conditional rows]`` batched together, and
  ``noise = uncond + scale * (cond - uncond)``. With a scale ≤ 1 (e.g. 1.0) the unconditional branch, and the
  negative prompt, are skipped: the UNet sees only the conditional row. Requests with and without guidance
  can share a UNet call: the unconditional half then holds only the guided requests.
* Requests are grouped by (scheduler, steps, height, width), in order of first appearance, and each group is
  denoised together in chunks of at most ``max_batch_size`` prompts; guidance scale, prompts and seeds may
  differ inside a group. All distinct texts of a batch are encoded together first.
* The latents are divided by the VAE ``scaling_factor`` here, before ``vae_decoder``; its ``images`` output
  (in [-1, 1]) becomes ``clip(x / 2 + 0.5, 0, 1)``, then ``round(255 x)`` as uint8 ``[H, W, 3]``.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import numbers
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from networks import ModelDims

# Orchestrator input and output names (the Triton tensors of the ``stable_diffusion`` model).
PROMPT = "PROMPT"
NEGATIVE_PROMPT = "NEGATIVE_PROMPT"
STEPS = "STEPS"
GUIDANCE_SCALE = "GUIDANCE_SCALE"
SEED = "SEED"
HEIGHT = "HEIGHT"
WIDTH = "WIDTH"
SCHEDULER = "SCHEDULER"
IMAGE = "IMAGE"

#: Scheduler names accepted by :func:`make_scheduler` → diffusers class.
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm_solver": "DPMSolverMultistepScheduler",
    "dpm_solver_singlestep": "DPMSolverSinglestepScheduler",
    "kdpm2": "KDPM2DiscreteScheduler",
    "kdpm2_ancestral": "KDPM2AncestralDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
    "deis": "DEISMultistepScheduler",
}
MAX_SEED = 2**64 - 1

OutputType = Literal["uint8", "float"]
NumpyNetwork = Callable[..., Mapping[str, np.ndarray]]


class RequestError(ValueError):
    """An invalid request; ``field`` names the offending input (``PROMPT``, ``STEPS``, ``HEIGHT`` ...)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def scheduler_key(name: str) -> str:
    """Canonical scheduler key for ``name``: a key of :data:`SCHEDULERS` or a diffusers class name (any case)."""
    normalized = name.strip().lower().replace("-", "_").replace(" ", "_")
    if normalized in SCHEDULERS:
        return normalized
    for key, class_name in SCHEDULERS.items():
        if class_name.lower() == normalized:
            return key
    raise KeyError(name)


def make_scheduler(name: str, config: Mapping[str, Any]) -> Any:
    """A fresh diffusers scheduler ``name`` built from a checkpoint's scheduler config (the training schedule)."""
    import diffusers

    scheduler_class = getattr(diffusers, SCHEDULERS[scheduler_key(name)])
    return scheduler_class.from_config(dict(config))


@dataclass(frozen=True)
class GenerationRequest:
    """One text-to-image request as received; ``None`` fields take the pipeline defaults."""

    prompt: str | bytes
    negative_prompt: str | bytes | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    height: int | None = None
    width: int | None = None
    scheduler: str | bytes | None = None


@dataclass(frozen=True)
class ResolvedRequest:
    """A validated request with every default filled in and both texts tokenized (int32 [77])."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    seed: int
    height: int
    width: int
    scheduler: str
    prompt_ids: np.ndarray = field(repr=False, compare=False)
    negative_prompt_ids: np.ndarray = field(repr=False, compare=False)

    @property
    def uses_guidance(self) -> bool:
        """Whether classifier-free guidance (and so the unconditional UNet branch) applies: scale > 1."""
        return self.guidance_scale > 1.0

    @property
    def group_key(self) -> tuple[str, int, int, int]:
        """Requests with equal keys are denoised together."""
        return (self.scheduler, self.steps, self.height, self.width)


@dataclass(frozen=True)
class PipelineSettings:
    """Defaults for absent inputs and limits for present ones."""

    steps: int = 50
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    scheduler: str = "pndm"
    max_steps: int = 150
    max_guidance_scale: float = 100.0
    #: Height and width must be multiples of this: the VAE factor, times the UNet's downsampling factor for
    #: exported (traced) UNets, which only accept latent sides divisible by it.
    size_multiple: int = 64
    min_size: int = 64
    max_size: int = 1024
    #: Most prompts per UNet/VAE call (the UNet then sees up to twice as many rows).
    max_batch_size: int = 8


@dataclass(frozen=True)
class Progress:
    """``step`` of ``total`` denoising steps are done for the requests at ``requests`` (submission indices)."""

    requests: tuple[int, ...]
    step: int
    total: int


@dataclass(frozen=True)
class GeneratedImage:
    """The final image of the request at index ``request``: uint8 [H, W, 3] (or float32 in [0, 1])."""

    request: int
    image: np.ndarray
    seed: int


class TextToImagePipeline:
    """Stable Diffusion text-to-image over numpy submodel callables (BLS handles, torch or ONNX Runtime)."""

    def __init__(
        self,
        text_encoder: NumpyNetwork,
        unet: NumpyNetwork,
        vae_decoder: NumpyNetwork,
        tokenizer: Any,
        scheduler_config: Mapping[str, Any],
        dims: ModelDims,
        settings: PipelineSettings | None = None,
    ) -> None:
        self.text_encoder = text_encoder
        self.unet = unet
        self.vae_decoder = vae_decoder
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.dims = dims
        self.settings = settings or PipelineSettings()
        self._check_settings()

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        text_encoder: NumpyNetwork,
        unet: NumpyNetwork,
        vae_decoder: NumpyNetwork,
        **overrides: Any,
    ) -> TextToImagePipeline:
        """Build from a diffusers checkpoint folder: tokenizer, scheduler config and sizes, no weights.

        Defaults derived from the checkpoint: image size ``unet.sample_size * vae factor``, scheduler = the
        checkpoint's, ``size_multiple`` = VAE factor × UNet downsampling factor (64 for SD 1.x),
        ``min_size`` = ``size_multiple``, ``max_size`` = 2 × the default size. ``overrides`` replace any
        :class:`PipelineSettings` field.
        """
        root = Path(checkpoint)
        dims = ModelDims.from_checkpoint(root)
        scheduler_config = json.loads(
            (root / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8")
        )
        default_size = dims.default_sample_size * dims.vae_scale_factor
        size_multiple = dims.vae_scale_factor * dims.unet_downsample_factor
        try:
            default_scheduler = scheduler_key(str(scheduler_config.get("_class_name", "PNDMScheduler")))
        except KeyError:
            default_scheduler = "pndm"
        settings = PipelineSettings(
            height=default_size,
            width=default_size,
            scheduler=default_scheduler,
            size_multiple=size_multiple,
            min_size=size_multiple,
            max_size=2 * default_size,
        )
        settings = replace(settings, **overrides)
        tokenizer = load_tokenizer(str((root / "tokenizer").resolve()))
        return cls(text_encoder, unet, vae_decoder, tokenizer, scheduler_config, dims, settings)

    def _check_settings(self) -> None:
        settings = self.settings
        if settings.size_multiple % self.dims.vae_scale_factor:
            raise ValueError(
                f"size_multiple {settings.size_multiple} must be a multiple of the VAE factor {self.dims.vae_scale_factor}"
            )
        train_steps = int(self.scheduler_config.get("num_train_timesteps", 1000))
        if not 1 <= settings.max_steps <= train_steps:
            raise ValueError(f"max_steps must be within [1, {train_steps}], got {settings.max_steps}")
        if settings.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {settings.max_batch_size}")
        try:
            scheduler_key(settings.scheduler)
        except KeyError:
            raise ValueError(
                f"unknown scheduler {settings.scheduler!r}; expected one of {', '.join(SCHEDULERS)}"
            ) from None
        try:
            self.resolve(GenerationRequest(prompt=""))
        except RequestError as error:
            raise ValueError(f"the default settings do not make a valid request: {error}") from error

    # ----------------------------------------------------------------------------------------------------------
    # validation

    def resolve(self, request: GenerationRequest) -> ResolvedRequest:
        """Validate ``request``, fill defaults and tokenize; raise :class:`RequestError` naming the bad field."""
        settings = self.settings
        prompt = _text(PROMPT, request.prompt)
        negative_prompt = (
            _text(NEGATIVE_PROMPT, request.negative_prompt) if request.negative_prompt is not None else ""
        )
        steps = _integer(STEPS, settings.steps if request.steps is None else request.steps)
        if steps < 1:
            raise RequestError(STEPS, f"{STEPS} must be at least 1, got {steps}")
        if steps > settings.max_steps:
            raise RequestError(STEPS, f"{STEPS} must be at most {settings.max_steps}, got {steps}")
        guidance = request.guidance_scale if request.guidance_scale is not None else settings.guidance_scale
        guidance_scale = _real(GUIDANCE_SCALE, guidance)
        if not 0.0 <= guidance_scale <= settings.max_guidance_scale:
            raise RequestError(
                GUIDANCE_SCALE,
                f"{GUIDANCE_SCALE} must be within [0, {settings.max_guidance_scale:g}], got {guidance_scale:g}",
            )
        seed = secrets.randbits(63) if request.seed is None else _integer(SEED, request.seed)
        if not 0 <= seed <= MAX_SEED:
            raise RequestError(SEED, f"{SEED} must be within [0, 2**64 - 1], got {seed}")
        height = self._size(HEIGHT, settings.height if request.height is None else request.height)
        width = self._size(WIDTH, settings.width if request.width is None else request.width)
        scheduler_name = (
            settings.scheduler if request.scheduler is None else _text(SCHEDULER, request.scheduler)
        )
        try:
            scheduler = scheduler_key(scheduler_name)
        except KeyError:
            raise RequestError(
                SCHEDULER, f"{SCHEDULER} {scheduler_name!r} is not one of {', '.join(SCHEDULERS)}"
            ) from None
        return ResolvedRequest(
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
            height=height,
            width=width,
            scheduler=scheduler,
            prompt_ids=self.tokenize(PROMPT, prompt),
            negative_prompt_ids=self.tokenize(NEGATIVE_PROMPT, negative_prompt),
        )

    def tokenize(self, field_name: str, text: str) -> np.ndarray:
        """Token ids int32 [77] of ``text`` padded to the text encoder length; too long → :class:`RequestError`."""
        length = self.dims.max_length
        ids = self.tokenizer(text, padding="max_length", max_length=length, truncation=False)["input_ids"]
        if len(ids) > length:
            raise RequestError(
                field_name,
                f"{field_name} is {len(ids)} tokens long including the start and end tokens; "
                f"the text encoder accepts at most {length}",
            )
        return np.asarray(ids, dtype=np.int32)

    def _size(self, field_name: str, value: Any) -> int:
        size = _integer(field_name, value)
        settings = self.settings
        if size % settings.size_multiple:
            raise RequestError(
                field_name,
                f"{field_name} must be a multiple of {settings.size_multiple} (VAE factor "
                f"{self.dims.vae_scale_factor} × UNet downsampling {settings.size_multiple // self.dims.vae_scale_factor}), "
                f"got {size}",
            )
        if not settings.min_size <= size <= settings.max_size:
            raise RequestError(
                field_name,
                f"{field_name} must be within [{settings.min_size}, {settings.max_size}], got {size}",
            )
        return size

    # ----------------------------------------------------------------------------------------------------------
    # generation

    def __call__(self, prompt: str, **options: Any) -> np.ndarray:
        """Generate one image for ``prompt``; ``options`` are :class:`GenerationRequest` fields."""
        return self.generate([GenerationRequest(prompt=prompt, **options)])[0]

    def generate(
        self,
        requests: Sequence[GenerationRequest | ResolvedRequest],
        output_type: OutputType = "uint8",
        on_progress: Callable[[Progress], None] | None = None,
    ) -> list[np.ndarray]:
        """Images for ``requests`` in order: uint8 [H, W, 3] (or float32 [0, 1] with ``output_type="float"``).

        Every request must be valid (the first invalid one raises :class:`RequestError`); validate them one by
        one with :meth:`resolve` to isolate errors per request. ``on_progress`` receives each :class:`Progress`.
        """
        images: list[np.ndarray | None] = [None] * len(requests)
        for event in self.stream(requests, output_type):
            if isinstance(event, Progress):
                if on_progress is not None:
                    on_progress(event)
            else:
                images[event.request] = event.image
        missing = [index for index, image in enumerate(images) if image is None]
        if missing:
            raise RuntimeError(f"no image was produced for requests {missing}")
        return [image for image in images if image is not None]

    def stream(
        self, requests: Sequence[GenerationRequest | ResolvedRequest], output_type: OutputType = "uint8"
    ) -> Iterator[Progress | GeneratedImage]:
        """Yield :class:`Progress` after each denoising step of each group, and each :class:`GeneratedImage`
        as soon as its group is decoded."""
        if output_type not in ("uint8", "float"):
            raise ValueError(f"output_type must be 'uint8' or 'float', got {output_type!r}")
        resolved = [item if isinstance(item, ResolvedRequest) else self.resolve(item) for item in requests]
        if not resolved:
            return
        embeddings = self._encode_texts(resolved)
        for indices in self._chunks(resolved):
            chunk = [resolved[index] for index in indices]
            latents: torch.Tensor | None = None
            for item in self._denoise(chunk, embeddings):
                if isinstance(item, torch.Tensor):
                    latents = item
                else:
                    step, total = item
                    yield Progress(requests=tuple(indices), step=step, total=total)
            assert latents is not None
            images = self._decode(latents)
            for index, request, image in zip(indices, chunk, images, strict=True):
                yield GeneratedImage(
                    request=index,
                    image=to_uint8(image) if output_type == "uint8" else image,
                    seed=request.seed,
                )

    def _chunks(self, requests: Sequence[ResolvedRequest]) -> list[list[int]]:
        groups: dict[tuple[str, int, int, int], list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.group_key, []).append(index)
        size = self.settings.max_batch_size
        return [
            indices[start : start + size]
            for indices in groups.values()
            for start in range(0, len(indices), size)
        ]

    def _encode_texts(self, requests: Sequence[ResolvedRequest]) -> dict[str, np.ndarray]:
        """Embed every distinct text needed (prompts, and negative prompts of guided requests): text → [77, D]."""
        ids_by_text: dict[str, np.ndarray] = {}
        for request in requests:
            if request.uses_guidance:
                ids_by_text.setdefault(request.negative_prompt, request.negative_prompt_ids)
            ids_by_text.setdefault(request.prompt, request.prompt_ids)
        texts = list(ids_by_text)
        rows = 2 * self.settings.max_batch_size
        embeddings: dict[str, np.ndarray] = {}
        for start in range(0, len(texts), rows):
            batch = texts[start : start + rows]
            input_ids = np.stack([ids_by_text[text] for text in batch])
            output = np.asarray(self.text_encoder(input_ids=input_ids)["text_embeddings"], dtype=np.float32)
            embeddings.update(zip(batch, output, strict=True))
        return embeddings

    def _denoise(
        self, chunk: Sequence[ResolvedRequest], embeddings: Mapping[str, np.ndarray]
    ) -> Iterator[tuple[int, int] | torch.Tensor]:
        """Run the denoising loop for one chunk; yield ``(step, total)`` progress, then the final latents."""
        first = chunk[0]
        scheduler = make_scheduler(first.scheduler, self.scheduler_config)
        scheduler.set_timesteps(first.steps, device="cpu")
        timesteps = scheduler.timesteps
        report_at = progress_points(len(timesteps), first.steps, getattr(scheduler, "order", 1))
        factor = self.dims.vae_scale_factor
        shape = (1, self.dims.latent_channels, first.height // factor, first.width // factor)
        generators = [torch.Generator(device="cpu").manual_seed(request.seed) for request in chunk]
        latents = torch.cat(
            [torch.randn(shape, generator=generator, dtype=torch.float32) for generator in generators]
        )
        latents = latents * scheduler.init_noise_sigma

        guided = [index for index, request in enumerate(chunk) if request.uses_guidance]
        hidden_rows = [embeddings[chunk[index].negative_prompt] for index in guided]
        hidden_rows += [embeddings[request.prompt] for request in chunk]
        encoder_hidden_states = np.ascontiguousarray(np.stack(hidden_rows), dtype=np.float32)
        scales = torch.tensor([chunk[index].guidance_scale for index in guided], dtype=torch.float32).view(
            -1, 1, 1, 1
        )
        step_options = _step_options(scheduler, generators)

        for position, timestep in enumerate(timesteps):
            model_input = scheduler.scale_model_input(latents, timestep)
            sample = torch.cat([model_input[guided], model_input]) if guided else model_input
            outputs = self.unet(
                sample=np.ascontiguousarray(sample.numpy(), dtype=np.float32),
                timestep=np.array([float(timestep)], dtype=np.float32),
                encoder_hidden_states=encoder_hidden_states,
            )
            noise = torch.from_numpy(np.array(outputs["latent"], dtype=np.float32))
            noise_uncond, noise_pred = noise[: len(guided)], noise[len(guided) :].clone()
            if guided:
                noise_pred[guided] = noise_uncond + scales * (noise_pred[guided] - noise_uncond)
            latents = scheduler.step(noise_pred, timestep, latents, **step_options, return_dict=False)[0]
            if position in report_at:
                yield report_at[position], len(report_at)
        yield latents

    def _decode(self, latents: torch.Tensor) -> np.ndarray:
        """VAE-decode latents to float32 images [B, H, W, 3] in [0, 1]."""
        scaled = (latents / self.dims.vae_scaling_factor).numpy()
        images = np.asarray(self.vae_decoder(latent=np.ascontiguousarray(scaled, dtype=np.float32))["images"])
        pixels = np.clip(images.astype(np.float32) / 2 + 0.5, 0.0, 1.0)
        return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=4)
def load_tokenizer(directory: str) -> Any:
    """The CLIP tokenizer saved in ``directory`` (cached: it is only read, never modified)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(directory)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] → uint8 (``round(255 x)``, as diffusers' ``numpy_to_pil``)."""
    return (pixels * 255).round().astype(np.uint8)


def progress_points(timestep_count: int, steps: int, order: int) -> dict[int, int]:
    """Loop positions after which a step counts as done → its 1-based number (diffusers' progress-bar rule).

    Second-order schedulers (Heun, KDPM2) take two UNet calls per step and PNDM one warm-up call, so the loop
    has more positions than steps; the reported total is still ``steps`` for every diffusers scheduler.
    """
    warmup = timestep_count - steps * order
    points = [
        position
        for position in range(timestep_count)
        if position == timestep_count - 1 or (position + 1 > warmup and (position + 1) % order == 0)
    ]
    return {position: number for number, position in enumerate(points, start=1)}


def _step_options(scheduler: Any, generators: list[torch.Generator]) -> dict[str, Any]:
    parameters = inspect.signature(scheduler.step).parameters
    options: dict[str, Any] = {}
    if "eta" in parameters:
        options["eta"] = 0.0
    if "generator" in parameters:
        options["generator"] = generators
    return options


# --------------------------------------------------------------------------------------------------------------
# Triton tensors → request


def request_from_inputs(inputs: Mapping[str, np.ndarray | None]) -> GenerationRequest:
    """Build a request from the orchestrator's input tensors (each holding one element; absent → ``None``).

    ``PROMPT``/``NEGATIVE_PROMPT``/``SCHEDULER`` are BYTES (UTF-8), ``STEPS``/``HEIGHT``/``WIDTH`` integers,
    ``SEED`` an integer, ``GUIDANCE_SCALE`` a float. Shapes ``[1]`` and ``[1, 1]`` are accepted.
    """
    if inputs.get(PROMPT) is None:
        raise RequestError(PROMPT, f"{PROMPT} is required")
    values = {name: _single(name, array) for name, array in inputs.items() if array is not None}
    unknown = set(values) - {PROMPT, NEGATIVE_PROMPT, STEPS, GUIDANCE_SCALE, SEED, HEIGHT, WIDTH, SCHEDULER}
    if unknown:
        raise RequestError(sorted(unknown)[0], f"unexpected inputs {sorted(unknown)}")
    return GenerationRequest(
        prompt=values[PROMPT],
        negative_prompt=values.get(NEGATIVE_PROMPT),
        steps=values.get(STEPS),
        guidance_scale=values.get(GUIDANCE_SCALE),
        seed=values.get(SEED),
        height=values.get(HEIGHT),
        width=values.get(WIDTH),
        scheduler=values.get(SCHEDULER),
    )


def _single(field_name: str, array: np.ndarray) -> Any:
    values = np.asarray(array)
    if values.size != 1:
        raise RequestError(
            field_name, f"{field_name} must hold exactly one value, got shape {list(values.shape)}"
        )
    value = values.reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) and not isinstance(value, np.bytes_) else value


def _text(field_name: str, value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise RequestError(field_name, f"{field_name} is not valid UTF-8: {error}") from None
    if isinstance(value, str):
        return value
    raise RequestError(field_name, f"{field_name} must be a string, got {type(value).__name__}")


def _integer(field_name: str, value: Any) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise RequestError(field_name, f"{field_name} must be an integer, got {value!r}")
    return int(value)


def _real(field_name: str, value: Any) -> float:
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise RequestError(field_name, f"{field_name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise RequestError(field_name, f"{field_name} must be finite, got {number}")
    return number
