"""The orchestrators: ``stable_diffusion`` (one image per request) and ``stable_diffusion_stream`` (progress,
then the image).

Both take one prompt per batch row and call the submodels of ``sd_submodels.py`` through BLS:
``text_encoder`` once for all distinct texts of the batch, ``unet`` once per denoising step with the
unconditional and conditional halves of every prompt batched together (the unconditional half is left out
for requests with ``GUIDANCE_SCALE`` ≤ 1), ``vae_decoder`` once per group. ``pipeline.py`` does the
orchestration; this module adapts it to Triton tensors.

Inputs (each ``[1]`` per batch row): ``PROMPT`` BYTES; optional ``NEGATIVE_PROMPT`` BYTES (default empty),
``STEPS`` INT32, ``GUIDANCE_SCALE`` FP32, ``SEED`` INT64 (random when absent), ``HEIGHT``, ``WIDTH`` INT32,
``SCHEDULER`` BYTES (``ddim``, ``euler_ancestral``, ... or a diffusers class name). Defaults come from the
checkpoint (see ``pipeline.py``). Output ``IMAGE`` UINT8 ``[H, W, 3]``.

Batching: Triton's dynamic batcher gathers concurrent requests; pbkit groups those of equal ``HEIGHT`` and
``WIDTH`` into one ``predict`` call (the images of one call are stacked); the pipeline then denoises the
requests sharing a scheduler and a step count together. An image depends only on its own request (its
``SEED`` seeds its own generator), never on what it was batched with. Invalid requests get INVALID_ARG
naming the field before anything runs; the rest of the batch goes on.

The stream model sends, for each request, one response per denoising step (``STEP`` k of ``TOTAL_STEPS``,
with an empty ``IMAGE`` of shape ``[0, 0, 3]``) and then the image (``STEP`` = ``TOTAL_STEPS``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import sd_submodels

import pbkit

#: Most prompts per ``predict`` call (the UNet then sees up to twice as many rows).
MAX_BATCH_SIZE = 4
#: How long the dynamic batcher waits for more requests (small next to a denoising step).
MAX_QUEUE_DELAY_US = 50_000

INPUTS = [
    pbkit.Input("PROMPT", "BYTES", [1]),
    pbkit.Input("NEGATIVE_PROMPT", "BYTES", [1], default=[b""]),
    pbkit.Input("STEPS", "INT32", [1], optional=True),
    pbkit.Input("GUIDANCE_SCALE", "FP32", [1], optional=True),
    pbkit.Input("SEED", "INT64", [1], optional=True),
    pbkit.Input("HEIGHT", "INT32", [1], optional=True),
    pbkit.Input("WIDTH", "INT32", [1], optional=True),
    pbkit.Input("SCHEDULER", "BYTES", [1], optional=True),
]
IMAGE = pbkit.Output("IMAGE", "UINT8", [-1, -1, 3])


class TextToImageModel:
    """What both orchestrators share: the submodel handles, the pipeline, request checks."""

    text_encoder = sd_submodels.text_encoder
    unet = sd_submodels.unet
    vae_decoder = sd_submodels.vae_decoder
    #: Inputs whose value must be the same in every row of one request (the rows share a ``predict`` call).
    uniform_inputs: tuple[str, ...] = ("HEIGHT", "WIDTH")

    def setup(self, ctx: pbkit.SetupContext) -> None:
        import pipeline

        sd_submodels.configure_torch(ctx)
        self.sd = pipeline
        self.pipeline = pipeline.TextToImagePipeline.from_checkpoint(
            sd_submodels.checkpoint_dir(ctx),
            text_encoder=self.text_encoder,
            unet=self.unet,
            vae_decoder=self.vae_decoder,
            max_batch_size=MAX_BATCH_SIZE,
        )
        # Import the default scheduler's diffusers modules now rather than during the first request.
        pipeline.make_scheduler(self.pipeline.settings.scheduler, self.pipeline.scheduler_config)

    def validate(self, **inputs: np.ndarray | None) -> None:
        """Reject a request with an invalid field (INVALID_ARG naming it) before any network runs."""
        for name in self.uniform_inputs:
            values = inputs.get(name)
            if values is not None and len(np.unique(values)) > 1:
                raise pbkit.InvalidArgument(
                    f"{name} must be the same in every row of a request, got {values.reshape(-1).tolist()}"
                )
        self.resolve(inputs)

    def resolve(self, inputs: Mapping[str, np.ndarray | None]) -> list[Any]:
        """One resolved pipeline request per batch row; an invalid field raises InvalidArgument."""
        rows = len(inputs["PROMPT"])  # type: ignore[arg-type]
        resolved = []
        for row in range(rows):
            tensors = {name: None if array is None else array[row] for name, array in inputs.items()}
            try:
                resolved.append(self.pipeline.resolve(self.sd.request_from_inputs(tensors)))
            except self.sd.RequestError as error:
                raise pbkit.InvalidArgument(str(error)) from None
        return resolved


@pbkit.model(
    name="stable_diffusion",
    inputs=INPUTS,
    outputs=[IMAGE],
    max_batch_size=MAX_BATCH_SIZE,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=MAX_QUEUE_DELAY_US),
    parameters=sd_submodels.PARAMETERS,
    group_by=["HEIGHT", "WIDTH"],
    description="Stable Diffusion text to image: PROMPT (and options) to IMAGE uint8 [H, W, 3].",
)
class StableDiffusion(TextToImageModel):
    """Stable Diffusion text to image: one ``IMAGE`` per prompt."""

    def predict(self, **inputs: np.ndarray | None) -> dict[str, np.ndarray]:
        images = self.pipeline.generate(self.resolve(inputs))
        return {"IMAGE": np.stack(images)}


@pbkit.model(
    name="stable_diffusion_stream",
    inputs=INPUTS,
    outputs=[IMAGE, pbkit.Output("STEP", "INT32", [1]), pbkit.Output("TOTAL_STEPS", "INT32", [1])],
    max_batch_size=MAX_BATCH_SIZE,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=MAX_QUEUE_DELAY_US),
    parameters=sd_submodels.PARAMETERS,
    group_by=["HEIGHT", "WIDTH", "STEPS", "SCHEDULER"],
    description="Stable Diffusion text to image, streamed: a response per denoising step, then the IMAGE.",
)
class StableDiffusionStream(TextToImageModel):
    """Stable Diffusion text to image, decoupled: progress after each denoising step, then the image."""

    uniform_inputs = ("HEIGHT", "WIDTH", "STEPS", "SCHEDULER")

    def predict(self, **inputs: np.ndarray | None) -> Iterator[dict[str, np.ndarray]]:
        resolved = self.resolve(inputs)
        rows = len(resolved)
        steps = np.zeros((rows, 1), dtype=np.int32)
        totals = np.array([[request.steps] for request in resolved], dtype=np.int32)
        images: list[np.ndarray | None] = [None] * rows
        for event in self.pipeline.stream(resolved):
            if isinstance(event, self.sd.Progress):
                steps[list(event.requests)] = event.step
                yield {
                    "STEP": steps.copy(),
                    "TOTAL_STEPS": totals,
                    "IMAGE": np.zeros((rows, 0, 0, 3), np.uint8),
                }
            else:
                images[event.request] = event.image
        yield {"STEP": totals, "TOTAL_STEPS": totals, "IMAGE": np.stack(images)}  # type: ignore[arg-type]
