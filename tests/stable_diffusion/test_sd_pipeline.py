"""The orchestration over numpy callables, against diffusers' StableDiffusionPipeline on the same components."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from sd_modules import pipeline as sd

SIZE = 16  # a multiple of 8: diffusers insists on it whatever the VAE factor
STEPS = 3


def _diffusers_images(
    reference: Any, scheduler: str, output_type: str, seed: int, **options: Any
) -> np.ndarray:
    import diffusers

    reference.scheduler = getattr(diffusers, sd.SCHEDULERS[scheduler]).from_config(reference.scheduler.config)
    result = reference(
        height=SIZE,
        width=SIZE,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
        **options,
    )
    if output_type == "pil":
        return np.stack([np.asarray(image) for image in result.images])
    return np.asarray(result.images)


class CountingNetwork:
    """Wraps a numpy network and records the batch size of each call."""

    def __init__(self, network: Callable[..., dict[str, np.ndarray]], batch_input: str) -> None:
        self.network = network
        self.batch_input = batch_input
        self.batch_sizes: list[int] = []

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self.batch_sizes.append(int(inputs[self.batch_input].shape[0]))
        return self.network(**inputs)


@pytest.fixture
def counted_pipeline(sd_checkpoint: Any, sd_torch_networks: dict[str, Any]) -> Any:
    networks = {
        "text_encoder": CountingNetwork(sd_torch_networks["text_encoder"], "input_ids"),
        "unet": CountingNetwork(sd_torch_networks["unet"], "sample"),
        "vae_decoder": CountingNetwork(sd_torch_networks["vae_decoder"], "latent"),
    }
    return sd.TextToImagePipeline.from_checkpoint(sd_checkpoint, **networks)


@pytest.mark.parametrize(
    ("scheduler", "guidance_scale"),
    [("pndm", 7.5), ("ddim", 7.5), ("euler_ancestral", 5.0), ("dpm_solver", 7.5), ("lms", 1.0)],
)
def test_matches_diffusers(
    sd_pipeline: Any, diffusers_pipeline: Any, scheduler: str, guidance_scale: float
) -> None:
    options = {
        "prompt": "a photo of a cat",
        "negative_prompt": "blurry",
        "num_inference_steps": STEPS,
        "guidance_scale": guidance_scale,
    }
    expected_float = _diffusers_images(diffusers_pipeline, scheduler, "np", seed=42, **options)[0]
    # What output_type="pil" returns, without a second run.
    from diffusers.image_processor import VaeImageProcessor

    expected_uint8 = np.asarray(VaeImageProcessor.numpy_to_pil(expected_float[None])[0])
    request = sd.GenerationRequest(
        "a photo of a cat",
        negative_prompt="blurry",
        steps=STEPS,
        guidance_scale=guidance_scale,
        seed=42,
        height=SIZE,
        width=SIZE,
        scheduler=scheduler,
    )
    image = sd_pipeline.generate([request])[0]
    assert image.dtype == np.uint8
    assert image.shape == (SIZE, SIZE, 3)
    assert np.abs(image / 255.0 - expected_uint8 / 255.0).mean() <= 1e-3
    pixels = sd_pipeline.generate([request], output_type="float")[0]
    assert pixels.dtype == np.float32
    assert np.abs(pixels - expected_float).max() <= 1e-5
    assert expected_float.std() > 0.05  # a real image, not a constant


def test_two_prompts_batched_equal_separate_runs(sd_pipeline: Any) -> None:
    requests = [
        sd.GenerationRequest(
            "a photo of a cat", steps=STEPS, seed=1, height=SIZE, width=SIZE, scheduler="euler_ancestral"
        ),
        sd.GenerationRequest(
            "a red car", steps=STEPS, seed=2, height=SIZE, width=SIZE, scheduler="euler_ancestral"
        ),
    ]
    batched = sd_pipeline.generate(requests, output_type="float")
    separate = [sd_pipeline.generate([request], output_type="float")[0] for request in requests]
    for together, alone in zip(batched, separate, strict=True):
        np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).mean() > 1e-2


def test_same_seed_same_image_other_seed_other_image(sd_pipeline: Any) -> None:
    request = sd.GenerationRequest("a photo of a cat", steps=2, seed=7, height=SIZE, width=SIZE)
    first, again, other = sd_pipeline.generate([request, request, replace(request, seed=8)])
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 1


def test_batch_matches_diffusers_with_a_generator_list(sd_pipeline: Any, diffusers_pipeline: Any) -> None:
    expected = _diffusers_images(
        diffusers_pipeline,
        "ddim",
        "np",
        seed=0,
        prompt=["a photo of a cat", "a red car"],
        num_inference_steps=STEPS,
        guidance_scale=6.0,
    )
    # diffusers with a generator list draws row i from generator i: seeds 11 and 12 here.
    import diffusers

    diffusers_pipeline.scheduler = diffusers.DDIMScheduler.from_config(diffusers_pipeline.scheduler.config)
    listed = diffusers_pipeline(
        prompt=["a photo of a cat", "a red car"],
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        guidance_scale=6.0,
        generator=[torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)],
        output_type="np",
    ).images
    requests = [
        sd.GenerationRequest(
            prompt, steps=STEPS, guidance_scale=6.0, seed=seed, height=SIZE, width=SIZE, scheduler="ddim"
        )
        for prompt, seed in (("a photo of a cat", 11), ("a red car", 12))
    ]
    images = np.stack(sd_pipeline.generate(requests, output_type="float"))
    np.testing.assert_allclose(images, listed, atol=1e-5)
    assert np.abs(images - expected).mean() > 1e-3  # the seeds matter


def test_guidance_one_skips_the_unconditional_branch(counted_pipeline: Any) -> None:
    request = sd.GenerationRequest(
        "a photo of a cat",
        negative_prompt="blurry",
        steps=STEPS,
        guidance_scale=1.0,
        seed=3,
        height=SIZE,
        width=SIZE,
        scheduler="ddim",  # one UNet call per step (PNDM adds a warm-up call)
    )
    unguided = counted_pipeline.generate([request, replace(request, seed=4)])
    assert counted_pipeline.unet.batch_sizes == [2] * STEPS  # two prompts, conditional rows only
    assert counted_pipeline.text_encoder.batch_sizes == [1]  # one distinct prompt, no negative prompt
    counted_pipeline.unet.batch_sizes.clear()
    guided = counted_pipeline.generate([replace(request, guidance_scale=7.5)])
    assert counted_pipeline.unet.batch_sizes == [2] * STEPS  # [unconditional, conditional]
    assert np.abs(unguided[0].astype(int) - guided[0].astype(int)).mean() > 1


def test_mixed_guidance_shares_unet_calls(counted_pipeline: Any, sd_pipeline: Any) -> None:
    base = sd.GenerationRequest(
        "a photo of a cat",
        negative_prompt="blurry",
        steps=STEPS,
        seed=5,
        height=SIZE,
        width=SIZE,
        scheduler="ddim",
    )
    requests = [
        replace(base, guidance_scale=1.0),
        replace(base, guidance_scale=7.5, seed=6),
        replace(base, guidance_scale=3.0, prompt="a dog"),
    ]
    images = counted_pipeline.generate(requests, output_type="float")
    assert (
        counted_pipeline.unet.batch_sizes == [2 + 3] * STEPS
    )  # uncond rows of the two guided requests + 3 cond rows
    assert counted_pipeline.vae_decoder.batch_sizes == [3]
    for request, image in zip(requests, images, strict=True):
        np.testing.assert_allclose(image, sd_pipeline.generate([request], output_type="float")[0], atol=1e-5)


def test_requests_are_grouped_by_size_steps_and_scheduler(counted_pipeline: Any) -> None:
    base = sd.GenerationRequest(
        "a photo of a cat", guidance_scale=1.0, seed=1, height=SIZE, width=SIZE, steps=2, scheduler="ddim"
    )
    requests = [
        base,
        replace(base, height=8),
        replace(base, seed=2),
        replace(base, steps=1),
        replace(base, scheduler="euler"),
    ]
    images = counted_pipeline.generate(requests)
    assert [image.shape for image in images] == [
        (16, 16, 3),
        (8, 16, 3),
        (16, 16, 3),
        (16, 16, 3),
        (16, 16, 3),
    ]
    assert counted_pipeline.vae_decoder.batch_sizes == [2, 1, 1, 1]
    assert counted_pipeline.unet.batch_sizes == [2, 2, 1, 1, 1, 1, 1]


def test_max_batch_size_splits_groups(
    sd_checkpoint: Any, sd_torch_networks: dict[str, Any], sd_pipeline: Any
) -> None:
    unet = CountingNetwork(sd_torch_networks["unet"], "sample")
    small = sd.TextToImagePipeline.from_checkpoint(
        sd_checkpoint,
        sd_torch_networks["text_encoder"],
        unet,
        sd_torch_networks["vae_decoder"],
        max_batch_size=2,
    )
    requests = [
        sd.GenerationRequest(
            f"prompt {index}", steps=1, seed=index, scheduler="ddim", height=SIZE, width=SIZE
        )
        for index in range(3)
    ]
    images = small.generate(requests, output_type="float")
    assert unet.batch_sizes == [4, 2]  # two chunks, guided: [uncond, cond] rows
    np.testing.assert_allclose(
        np.stack(images), np.stack(sd_pipeline.generate(requests, output_type="float")), atol=1e-5
    )


@pytest.mark.parametrize(("scheduler", "steps"), [("pndm", 3), ("heun", 3), ("ddim", 1)])
def test_stream_reports_each_step_then_the_image(sd_pipeline: Any, scheduler: str, steps: int) -> None:
    request = sd.GenerationRequest(
        "a photo of a cat", steps=steps, seed=9, height=SIZE, width=SIZE, scheduler=scheduler
    )
    events = list(sd_pipeline.stream([request, replace(request, seed=10)], output_type="float"))
    progress = [event for event in events if isinstance(event, sd.Progress)]
    assert [(event.step, event.total) for event in progress] == [
        (step, steps) for step in range(1, steps + 1)
    ]
    assert all(event.requests == (0, 1) for event in progress)
    assert [type(event) for event in events[-2:]] == [sd.GeneratedImage, sd.GeneratedImage]
    assert [event.request for event in events[-2:]] == [0, 1]
    assert [event.seed for event in events[-2:]] == [9, 10]
    np.testing.assert_allclose(
        events[-2].image, sd_pipeline.generate([request], output_type="float")[0], atol=1e-5
    )


def test_generate_reports_progress(sd_pipeline: Any) -> None:
    seen: list[tuple[int, int]] = []
    sd_pipeline.generate(
        [sd.GenerationRequest("a cat", steps=2, seed=0, height=SIZE, width=SIZE)],
        on_progress=lambda event: seen.append((event.step, event.total)),
    )
    assert seen == [(1, 2), (2, 2)]


def test_random_seed_is_reported(sd_pipeline: Any) -> None:
    events = list(sd_pipeline.stream([sd.GenerationRequest("a cat", steps=1, height=SIZE, width=SIZE)]))
    image = events[-1]
    assert isinstance(image, sd.GeneratedImage)
    again = sd_pipeline.generate(
        [sd.GenerationRequest("a cat", steps=1, height=SIZE, width=SIZE, seed=image.seed)]
    )[0]
    np.testing.assert_array_equal(image.image, again)


def test_progress_points_follow_diffusers_rule() -> None:
    assert sd.progress_points(4, 4, 1) == {0: 1, 1: 2, 2: 3, 3: 4}
    assert sd.progress_points(5, 4, 1) == {1: 1, 2: 2, 3: 3, 4: 4}  # PNDM: one warm-up call
    assert sd.progress_points(7, 4, 2) == {1: 1, 3: 2, 5: 3, 6: 4}  # Heun: two calls per step


def test_defaults_come_from_the_checkpoint(sd_pipeline: Any) -> None:
    settings = sd_pipeline.settings
    assert (settings.height, settings.width) == (64, 64)  # unet sample_size 32 × VAE factor 2
    assert settings.scheduler == "pndm"
    assert settings.size_multiple == 4  # VAE factor 2 × UNet downsampling 2
    resolved = sd_pipeline.resolve(sd.GenerationRequest("a cat"))
    assert (resolved.steps, resolved.guidance_scale, resolved.height, resolved.width) == (50, 7.5, 64, 64)
    assert resolved.prompt_ids.dtype == np.int32
    assert resolved.prompt_ids.shape == (77,)


def test_scheduler_names() -> None:
    assert sd.scheduler_key("DDIM") == "ddim"
    assert sd.scheduler_key("EulerAncestralDiscreteScheduler") == "euler_ancestral"
    assert sd.scheduler_key("dpm-solver") == "dpm_solver"
    config = {
        "num_train_timesteps": 1000,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
    }
    for name in sd.SCHEDULERS:
        scheduler = sd.make_scheduler(name, config)
        assert type(scheduler).__name__ == sd.SCHEDULERS[name]
        assert scheduler.config.beta_schedule == "scaled_linear"
    with pytest.raises(KeyError):
        sd.scheduler_key("warp_drive")
