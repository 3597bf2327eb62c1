"""The built stable_diffusion repository served by the real local tritonserver and by LocalTriton.

Every test runs against both (``triton`` is parametrized; the server case carries the ``server`` marker and
one tritonserver serves the whole module): images equal diffusers' ``StableDiffusionPipeline`` on the same
tiny random checkpoint, seeds are deterministic, concurrent prompts are batched, a guidance scale of 1.0
skips the unconditional UNet rows, progress is streamed, and bad fields are INVALID_ARG naming them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sd_modules import MODEL_DIR, sd_client
from sd_serving_support import (
    SIZE,
    STEPS,
    Observer,
    build_repository,
    diffusers_image,
    eventually,
    infer_concurrently,
    mean_pixel_difference,
    small_request,
)

from pbkit.testing.client import InferError

MODELS = ("stable_diffusion", "stable_diffusion_stream", "text_encoder", "unet", "vae_decoder")


@pytest.fixture(scope="module")
def repository(sd_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("sd_repository")
    report = build_repository(output, sd_checkpoint)
    assert {model.name: model.kind for model in report.models} == {
        "stable_diffusion": "python",
        "stable_diffusion_stream": "python",
        "text_encoder": "python variant",
        "unet": "python variant",
        "vae_decoder": "python variant",
    }
    return output


@pytest.fixture(
    scope="module", params=["local", pytest.param("server", marks=[pytest.mark.server, pytest.mark.slow])]
)
def triton(request: pytest.FixtureRequest, repository: Path) -> Iterator[Any]:
    """The repository served in-process (LocalTriton) or by a real tritonserver."""
    if request.param == "local":
        from pbkit.testing.local import LocalTriton

        with LocalTriton(repository, timeout=300) as local:
            assert all(local.is_model_ready(name) for name in MODELS)
            yield local
        return
    from pbkit.testing.server import TritonServer

    with TritonServer(repository, startup_timeout=300, timeout=300) as server:
        not_ready = {s.name: s.reason[:500] for s in server.model_states() if s.state != "READY"}
        assert not not_ready, not_ready
        yield server


@pytest.mark.parametrize(
    ("scheduler", "guidance_scale", "negative_prompt"),
    [("pndm", 7.5, "blurry"), ("euler_ancestral", 5.0, None), ("ddim", 1.0, None)],
)
def test_image_matches_diffusers(
    triton: Any, diffusers_pipeline: Any, scheduler: str, guidance_scale: float, negative_prompt: str | None
) -> None:
    inputs = small_request(
        negative_prompt=negative_prompt, guidance_scale=guidance_scale, seed=42, scheduler=scheduler
    )
    image = triton.infer("stable_diffusion", inputs)["IMAGE"]
    assert image.dtype == np.uint8
    assert image.shape == (1, SIZE, SIZE, 3)
    expected = diffusers_image(
        diffusers_pipeline,
        prompt="a photo of a cat",
        negative_prompt=negative_prompt,
        seed=42,
        scheduler=scheduler,
        guidance_scale=guidance_scale,
    )
    assert mean_pixel_difference(image[0], expected) <= 1e-3
    assert expected.std() > 10  # a real image, not a constant


def test_same_seed_same_image_other_seed_other_image(triton: Any) -> None:
    first = triton.infer("stable_diffusion", small_request(seed=7))["IMAGE"]
    again = triton.infer("stable_diffusion", small_request(seed=7))["IMAGE"]
    other = triton.infer("stable_diffusion", small_request(seed=8))["IMAGE"]
    np.testing.assert_array_equal(first, again)
    assert mean_pixel_difference(first, other) > 0.01


def test_defaults_come_from_the_checkpoint(triton: Any) -> None:
    image = triton.infer("stable_diffusion", small_request(height=None, width=None, steps=1))["IMAGE"]
    assert image.shape == (1, 64, 64, 3)  # UNet sample size 32 × VAE factor 2


def test_concurrent_prompts_are_batched(triton: Any) -> None:
    observer = Observer(triton)
    prompts = ["a photo of a cat", "a red car", "a bowl of fruit", "a lighthouse"]
    requests = [
        small_request(prompt, seed=index, scheduler="ddim", guidance_scale=7.5)
        for index, prompt in enumerate(prompts)
    ]
    alone = [triton.infer("stable_diffusion", inputs)["IMAGE"] for inputs in requests]
    batches_before = observer.batch_sizes("stable_diffusion")
    calls_before, rows_before = observer.calls("unet"), observer.rows("unet")

    together = infer_concurrently(triton, "stable_diffusion", requests)

    batches = eventually(
        lambda: observer.batch_sizes("stable_diffusion") - batches_before,
        lambda counts: sum(size * count for size, count in counts.items()) == len(requests),
    )
    assert sum(size * count for size, count in batches.items()) == len(requests), batches
    assert max(batches) >= 2, batches  # the dynamic batcher gathered concurrent requests
    calls, rows = observer.calls("unet") - calls_before, observer.rows("unet") - rows_before
    assert rows == 2 * len(requests) * STEPS  # unconditional + conditional row of every prompt and step
    assert calls < len(requests) * STEPS  # ... in fewer UNet calls than one per prompt and step
    for index, (outputs, reference) in enumerate(zip(together, alone, strict=True)):
        assert not isinstance(outputs, InferError), outputs
        assert mean_pixel_difference(outputs["IMAGE"], reference) <= 1e-3, index


def test_an_invalid_request_fails_alone(triton: Any) -> None:
    good = small_request(seed=11, scheduler="ddim")
    expected = triton.infer("stable_diffusion", good)["IMAGE"]
    results = infer_concurrently(
        triton, "stable_diffusion", [good, small_request(seed=12, scheduler="ddim", steps=0), good]
    )
    assert isinstance(results[1], InferError)
    assert results[1].code == "INVALID_ARG"
    assert results[1].message.startswith("STEPS must be at least 1")
    for outputs in (results[0], results[2]):
        assert not isinstance(outputs, InferError), outputs
        assert mean_pixel_difference(outputs["IMAGE"], expected) <= 1e-3


@pytest.mark.parametrize(("guidance_scale", "rows_per_step"), [(1.0, 1), (7.5, 2)])
def test_guidance_one_skips_the_unconditional_branch(
    triton: Any, guidance_scale: float, rows_per_step: int
) -> None:
    observer = Observer(triton)
    calls_before, rows_before = observer.calls("unet"), observer.rows("unet")
    text_rows_before = observer.rows("text_encoder")
    inputs = small_request(
        negative_prompt="blurry", guidance_scale=guidance_scale, seed=3, scheduler="ddim"
    )  # DDIM: one UNet call per step
    triton.infer("stable_diffusion", inputs)
    assert eventually(lambda: observer.calls("unet") - calls_before, lambda calls: calls >= STEPS) == STEPS
    assert observer.rows("unet") - rows_before == rows_per_step * STEPS
    assert observer.rows("text_encoder") - text_rows_before == rows_per_step  # the negative prompt too


def test_progress_is_streamed_then_the_image(triton: Any) -> None:
    inputs = small_request(seed=5, scheduler="pndm")
    responses = list(triton.stream("stable_diffusion_stream", inputs))
    assert [int(r["STEP"][0, 0]) for r in responses] == [*range(1, STEPS + 1), STEPS]
    assert all(int(r["TOTAL_STEPS"][0, 0]) == STEPS for r in responses)
    assert all(r["IMAGE"].shape == (1, 0, 0, 3) for r in responses[:-1])
    final = responses[-1]["IMAGE"]
    assert final.shape == (1, SIZE, SIZE, 3)
    np.testing.assert_array_equal(final, triton.infer("stable_diffusion", inputs)["IMAGE"])


def test_a_streamed_request_with_two_prompts(triton: Any) -> None:
    first = small_request("a photo of a cat", seed=1, scheduler="heun", steps=2)
    second = small_request("a red car", seed=2, scheduler="heun", steps=2)
    both = {name: np.concatenate([first[name], second[name]]) for name in first}
    responses = list(triton.stream("stable_diffusion_stream", both))
    assert [r["STEP"][:, 0].tolist() for r in responses] == [[1, 1], [2, 2], [2, 2]]
    images = responses[-1]["IMAGE"]
    assert images.shape == (2, SIZE, SIZE, 3)
    for row, alone in enumerate((first, second)):
        expected = triton.infer("stable_diffusion", alone)["IMAGE"][0]
        assert mean_pixel_difference(images[row], expected) <= 1e-3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"height": 30}, "HEIGHT must be a multiple of 4 (VAE factor 2 × UNet downsampling 2), got 30"),
        ({"width": 18}, "WIDTH must be a multiple of 4"),
        ({"width": 256}, "WIDTH must be within [4, 128], got 256"),
        ({"steps": 0}, "STEPS must be at least 1, got 0"),
        ({"guidance_scale": -1.0}, "GUIDANCE_SCALE must be within [0, 100], got -1"),
        ({"seed": -5}, "SEED must be within [0, 2**64 - 1], got -5"),
        ({"scheduler": "warp_drive"}, "SCHEDULER 'warp_drive' is not one of ddim, ddpm, pndm"),
        ({"prompt": " ".join(["cat"] * 76)}, "PROMPT is 78 tokens long including the start and end tokens"),
        ({"negative_prompt": " ".join(["dog"] * 80)}, "NEGATIVE_PROMPT is 82 tokens long"),
    ],
)
def test_invalid_fields_are_named(triton: Any, options: dict[str, Any], message: str) -> None:
    calls_before = Observer(triton).calls("unet")
    inputs = small_request(**options)
    with pytest.raises(InferError) as caught:
        triton.infer("stable_diffusion", inputs)
    assert caught.value.code == "INVALID_ARG"
    assert caught.value.message.startswith(message), caught.value.message
    # The decoupled model sends the same message (a gRPC stream carries no code for it).
    with pytest.raises(InferError) as streamed:
        list(triton.stream("stable_diffusion_stream", inputs))
    assert streamed.value.message.startswith(message), streamed.value.message
    assert Observer(triton).calls("unet") == calls_before  # rejected before any network ran


def test_rows_of_one_request_must_share_the_image_size(triton: Any) -> None:
    first, second = small_request(seed=1), small_request(seed=2, height=SIZE * 2)
    both = {name: np.concatenate([first[name], second[name]]) for name in first}
    with pytest.raises(InferError) as caught:
        triton.infer("stable_diffusion", both)
    assert caught.value.code == "INVALID_ARG"
    assert (
        caught.value.message == f"HEIGHT must be the same in every row of a request, got [{SIZE}, {SIZE * 2}]"
    )


@pytest.mark.parametrize(
    "triton", [pytest.param("server", marks=[pytest.mark.server, pytest.mark.slow])], indirect=True
)
def test_readme_request_gives_the_committed_png(triton: Any, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "cat.png"
    argv = ["a photo of a cat", "-o", str(png), "--seed", "42", "--steps", "20", "--url", triton.grpc_url]
    assert sd_client.main(argv) == 0  # the README's command
    image = np.asarray(Image.open(png).convert("RGB"))
    committed = np.asarray(Image.open(MODEL_DIR / "images" / "sd_tiny.png").convert("RGB"))
    assert image.shape == (64, 64, 3)
    assert mean_pixel_difference(image, committed) <= 1e-3
    np.testing.assert_array_equal(
        image, sd_client.generate(triton.grpc_url, "a photo of a cat", seed=42, steps=20)
    )


@pytest.mark.parametrize(
    "triton", [pytest.param("server", marks=[pytest.mark.server, pytest.mark.slow])], indirect=True
)
def test_readme_client_streams(triton: Any) -> None:
    options = {"steps": STEPS, "height": SIZE, "width": SIZE, "seed": 42, "scheduler": "ddim"}
    expected = triton.infer("stable_diffusion", small_request(**options))["IMAGE"][0]
    events = list(sd_client.stream(triton.grpc_url, "a photo of a cat", **options))
    assert [(step, total) for step, total, _ in events] == [(1, 3), (2, 3), (3, 3), (3, 3)]
    assert all(image is None for _, _, image in events[:-1])
    np.testing.assert_array_equal(events[-1][2], expected)
