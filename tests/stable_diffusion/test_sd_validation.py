"""Request validation: every bad input gets a RequestError naming its field, before any network runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sd_modules import pipeline as sd


class NoNetwork:
    """Fails the test if the pipeline gets as far as calling a network."""

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        raise AssertionError(f"a network was called with {sorted(inputs)}")


@pytest.fixture(scope="module")
def offline_pipeline(sd_checkpoint: Any) -> Any:
    return sd.TextToImagePipeline.from_checkpoint(sd_checkpoint, NoNetwork(), NoNetwork(), NoNetwork())


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        (
            {"height": 30},
            "HEIGHT",
            "HEIGHT must be a multiple of 4 (VAE factor 2 × UNet downsampling 2), got 30",
        ),
        ({"width": 33}, "WIDTH", "WIDTH must be a multiple of 4"),
        ({"height": 0}, "HEIGHT", "HEIGHT must be within [4, 128], got 0"),
        ({"width": 256}, "WIDTH", "WIDTH must be within [4, 128], got 256"),
        ({"height": 16.0}, "HEIGHT", "HEIGHT must be an integer"),
        ({"steps": 0}, "STEPS", "STEPS must be at least 1, got 0"),
        ({"steps": -3}, "STEPS", "STEPS must be at least 1"),
        ({"steps": 151}, "STEPS", "STEPS must be at most 150, got 151"),
        ({"steps": True}, "STEPS", "STEPS must be an integer"),
        ({"guidance_scale": -0.5}, "GUIDANCE_SCALE", "GUIDANCE_SCALE must be within [0, 100], got -0.5"),
        ({"guidance_scale": float("nan")}, "GUIDANCE_SCALE", "GUIDANCE_SCALE must be finite"),
        ({"guidance_scale": "7.5"}, "GUIDANCE_SCALE", "GUIDANCE_SCALE must be a number"),
        ({"seed": -1}, "SEED", "SEED must be within [0, 2**64 - 1], got -1"),
        ({"seed": 2**64}, "SEED", "SEED must be within"),
        ({"scheduler": "warp_drive"}, "SCHEDULER", "SCHEDULER 'warp_drive' is not one of ddim, ddpm, pndm"),
        ({"negative_prompt": b"\xff\xfe"}, "NEGATIVE_PROMPT", "NEGATIVE_PROMPT is not valid UTF-8"),
    ],
)
def test_invalid_fields(offline_pipeline: Any, options: dict[str, Any], field: str, message: str) -> None:
    request = sd.GenerationRequest("a photo of a cat", **options)
    with pytest.raises(sd.RequestError, match="^" + _escape(message)) as caught:
        offline_pipeline.resolve(request)
    assert caught.value.field == field
    with pytest.raises(sd.RequestError):
        offline_pipeline.generate([request])


def test_over_long_prompt_is_an_error_not_a_truncation(offline_pipeline: Any) -> None:
    fits = " ".join(["cat"] * 75)  # 75 words + start + end = 77 tokens
    resolved = offline_pipeline.resolve(sd.GenerationRequest(fits))
    assert resolved.prompt_ids[0] == 49406
    assert resolved.prompt_ids[-1] == 49407
    too_long = fits + " cat"
    with pytest.raises(sd.RequestError, match=r"^PROMPT is 78 tokens long .* at most 77") as caught:
        offline_pipeline.resolve(sd.GenerationRequest(too_long))
    assert caught.value.field == "PROMPT"
    with pytest.raises(sd.RequestError, match=r"^NEGATIVE_PROMPT is 78 tokens long") as caught:
        offline_pipeline.resolve(sd.GenerationRequest("a cat", negative_prompt=too_long))
    assert caught.value.field == "NEGATIVE_PROMPT"


def test_non_string_prompt(offline_pipeline: Any) -> None:
    with pytest.raises(sd.RequestError, match=r"^PROMPT must be a string") as caught:
        offline_pipeline.resolve(sd.GenerationRequest(42))  # type: ignore[arg-type]
    assert caught.value.field == "PROMPT"


def test_numpy_scalars_and_bytes_are_accepted(offline_pipeline: Any) -> None:
    resolved = offline_pipeline.resolve(
        sd.GenerationRequest(
            np.bytes_("a photo of a cat"),
            steps=np.int32(5),
            guidance_scale=np.float32(1.0),
            seed=np.int64(3),
            height=np.int32(8),
            width=np.int64(12),
            scheduler=b"Euler",
        )
    )
    assert (resolved.prompt, resolved.steps, resolved.seed, resolved.height, resolved.width) == (
        "a photo of a cat",
        5,
        3,
        8,
        12,
    )
    assert resolved.scheduler == "euler"
    assert not resolved.uses_guidance


def test_request_from_triton_tensors() -> None:
    request = sd.request_from_inputs(
        {
            "PROMPT": np.array([b"a photo of a cat"], dtype=np.object_),
            "NEGATIVE_PROMPT": np.array([[b"blurry"]], dtype=np.object_),
            "STEPS": np.array([20], dtype=np.int32),
            "GUIDANCE_SCALE": np.array([7.5], dtype=np.float32),
            "SEED": np.array([123], dtype=np.int64),
            "HEIGHT": np.array([[64]], dtype=np.int32),
            "WIDTH": None,
        }
    )
    assert request == sd.GenerationRequest(
        prompt=b"a photo of a cat",
        negative_prompt=b"blurry",
        steps=20,
        guidance_scale=7.5,
        seed=123,
        height=64,
    )


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ({}, "PROMPT", "PROMPT is required"),
        ({"PROMPT": None}, "PROMPT", "PROMPT is required"),
        (
            {"PROMPT": np.array([b"a", b"b"], dtype=np.object_)},
            "PROMPT",
            r"PROMPT must hold exactly one value, got shape \[2\]",
        ),
        (
            {"PROMPT": np.array([b"a"], dtype=np.object_), "STEPS": np.zeros((0,), np.int32)},
            "STEPS",
            "STEPS must hold exactly one",
        ),
        (
            {"PROMPT": np.array([b"a"], dtype=np.object_), "COLOR": np.array([1])},
            "COLOR",
            "unexpected inputs",
        ),
    ],
)
def test_bad_triton_tensors(inputs: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(sd.RequestError, match="^" + message) as caught:
        sd.request_from_inputs(inputs)
    assert caught.value.field == field


def test_invalid_settings_are_rejected(sd_checkpoint: Any) -> None:
    networks = (NoNetwork(), NoNetwork(), NoNetwork())
    with pytest.raises(ValueError, match="size_multiple 3 must be a multiple of the VAE factor 2"):
        sd.TextToImagePipeline.from_checkpoint(sd_checkpoint, *networks, size_multiple=3)
    with pytest.raises(ValueError, match=r"max_steps must be within \[1, 1000\]"):
        sd.TextToImagePipeline.from_checkpoint(sd_checkpoint, *networks, max_steps=5000)
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        sd.TextToImagePipeline.from_checkpoint(sd_checkpoint, *networks, scheduler="nope")
    with pytest.raises(
        ValueError, match="default settings do not make a valid request: STEPS must be at most 10"
    ):
        sd.TextToImagePipeline.from_checkpoint(sd_checkpoint, *networks, max_steps=10)


def test_output_type_is_checked(offline_pipeline: Any) -> None:
    with pytest.raises(ValueError, match="output_type must be 'uint8' or 'float'"):
        list(offline_pipeline.stream([sd.GenerationRequest("a cat")], output_type="png"))


def test_empty_batch(offline_pipeline: Any) -> None:
    assert offline_pipeline.generate([]) == []


def _escape(text: str) -> str:
    import re

    return re.escape(text)
