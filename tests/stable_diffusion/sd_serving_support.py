"""Helpers of the serving tests: building the repository, requests, the diffusers reference, observations.

The observations (UNet calls, rows per network, orchestrator batch sizes) read the same facts from the
real server (Triton's ``/v2/models/<m>/stats`` and the ``stable_diffusion_network_rows`` counter on
``/metrics``) and from :class:`pbkit.testing.local.LocalTriton` (its ``batch_sizes`` and ``metrics``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from sd_modules import MODEL_DIR, pipeline, sd_client, sd_submodels

from pbkit.build import BuildReport, build
from pbkit.testing.client import InferError

SIZE = 16  # a multiple of 8: diffusers insists on it whatever the VAE factor
STEPS = 3
ROWS_METRIC = sd_submodels.ROWS_METRIC
T = TypeVar("T")


@contextmanager
def checkpoint_environment(checkpoint: Path) -> Iterator[None]:
    """``PBKIT_SD_CHECKPOINT`` set to ``checkpoint`` while the declarations are imported."""
    previous = os.environ.get(sd_submodels.CHECKPOINT_ENV)
    os.environ[sd_submodels.CHECKPOINT_ENV] = str(checkpoint)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(sd_submodels.CHECKPOINT_ENV, None)
        else:
            os.environ[sd_submodels.CHECKPOINT_ENV] = previous


def build_repository(
    output: Path, checkpoint: Path, *, project: Path = MODEL_DIR, variant: str | None = None
) -> BuildReport:
    """``pbkit build`` of the example for ``checkpoint`` (the build-time default of the parameter)."""
    with checkpoint_environment(checkpoint):
        return build(project, output, variant=variant)


def request(prompt: str = "a photo of a cat", **options: Any) -> dict[str, np.ndarray]:
    """One request's tensors; ``options`` are :func:`sd_client.request_tensors` keywords."""
    return sd_client.request_tensors(prompt, **options)


def small_request(prompt: str = "a photo of a cat", **options: Any) -> dict[str, np.ndarray]:
    """A quick request: ``STEPS`` steps at ``SIZE`` × ``SIZE`` unless ``options`` say otherwise."""
    fields = {"steps": STEPS, "height": SIZE, "width": SIZE, **options}
    return request(prompt, **fields)


def diffusers_image(
    reference: Any,
    *,
    prompt: str,
    seed: int,
    scheduler: str,
    guidance_scale: float,
    negative_prompt: str | None = None,
    steps: int = STEPS,
    size: int = SIZE,
) -> np.ndarray:
    """diffusers' ``StableDiffusionPipeline`` image as ``output_type="pil"`` gives it: uint8 [H, W, 3]."""
    import diffusers

    reference.scheduler = getattr(diffusers, pipeline.SCHEDULERS[scheduler]).from_config(
        reference.scheduler.config
    )
    result = reference(
        prompt=prompt,
        negative_prompt=negative_prompt,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        height=size,
        width=size,
        generator=torch.Generator().manual_seed(seed),
        output_type="pil",
    )
    return np.asarray(result.images[0])


def mean_pixel_difference(first: np.ndarray, second: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images in [0, 1] units."""
    assert first.shape == second.shape, (first.shape, second.shape)
    return float(np.abs(first.astype(np.float64) - second.astype(np.float64)).mean() / 255.0)


def infer_concurrently(client: Any, model: str, requests: Sequence[dict[str, np.ndarray]]) -> list[Any]:
    """Send every request at once from its own thread; outputs (or the InferError) in order."""

    def one(inputs: dict[str, np.ndarray]) -> Any:
        try:
            return client.infer(model, inputs)
        except InferError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(one, requests))


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Poll ``read`` until ``done`` accepts its value or ``timeout`` passes; return the last value.

    Triton updates a model's statistics just after sending its response, so a client can be faster.
    """
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


class Observer:
    """What the served models did, read the same way from a TritonServer or a LocalTriton."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.is_server = hasattr(client, "metrics_url")

    def calls(self, model: str) -> int:
        """How many requests ``model`` has executed successfully."""
        if self.is_server:
            return int(self._stats(model)["inference_stats"]["success"]["count"])
        return sum(self.client.batch_sizes(model))

    def batch_sizes(self, model: str) -> collections.Counter[int]:
        """Executions of ``model`` per batch size (requests per ``execute`` call)."""
        if self.is_server:
            return collections.Counter(
                {
                    int(entry["batch_size"]): int(entry["compute_infer"]["count"])
                    for entry in self._stats(model).get("batch_stats", [])
                }
            )
        return collections.Counter(self.client.batch_sizes(model))

    def rows(self, network: str) -> int:
        """Rows ``network`` has processed (prompts, or prompt halves for the UNet)."""
        if not self.is_server:
            try:
                return int(self.client.metrics.value(ROWS_METRIC, {"network": network}))
            except KeyError:
                return 0
        with urllib.request.urlopen(self.client.metrics_url, timeout=30) as response:
            text = response.read().decode("utf-8")
        found = re.search(rf'^{ROWS_METRIC}{{network="{network}"}} (\S+)$', text, re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    def _stats(self, model: str) -> dict[str, Any]:
        url = f"{self.client.http_url}/v2/models/{model}/stats"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)["model_stats"][0]
