"""Shared fixtures for the stable_diffusion example: one tiny random checkpoint per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sd_modules import networks, pipeline, tiny_checkpoint


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run the tiny networks on one thread: on a shared 2-core machine this is several times faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def sd_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion checkpoint in the diffusers folder layout."""
    return tiny_checkpoint.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def sd_torch_networks(sd_checkpoint: Path) -> dict[str, Any]:
    """The three networks of the tiny checkpoint behind the numpy calling convention."""
    return networks.torch_networks(sd_checkpoint)


@pytest.fixture(scope="session")
def sd_pipeline(sd_checkpoint: Path, sd_torch_networks: dict[str, Any]) -> Any:
    """The orchestration over the torch networks (stateless between calls, so shared)."""
    return pipeline.TextToImagePipeline.from_checkpoint(sd_checkpoint, **sd_torch_networks)


@pytest.fixture(scope="session")
def diffusers_pipeline(sd_checkpoint: Path) -> Any:
    """diffusers' own StableDiffusionPipeline loaded from the same checkpoint."""
    from diffusers import StableDiffusionPipeline

    reference = StableDiffusionPipeline.from_pretrained(sd_checkpoint, safety_checker=None)
    reference.set_progress_bar_config(disable=True)
    return reference
