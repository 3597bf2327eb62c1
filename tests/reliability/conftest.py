"""Shared fixtures of the reliability tests: one repository (the example models and the reliability
project), one real tritonserver and one LocalTriton on it for the whole session, and the oracles.

``PBKIT_FUZZ_SCALE`` multiplies the number of fuzzed requests per model (default 1: the CI size);
``PBKIT_RELIABILITY_REPORT`` names a JSON file that receives the fuzzing statistics of the session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_contracts import (
    RELIABILITY_PROJECT,
    WHISPER_MAX_NEW_TOKENS,
    EmbeddingReferences,
    TinyCheckpoints,
)
from reliability_fuzz import FuzzStatistics

from pbkit.build import build
from pbkit.config import read_config, render
from pbkit.config.check import check_repository

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MODELS = ROOT / "models"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_reliability_repository(output: Path, checkpoints: TinyCheckpoints | None = None) -> Path:
    """The example models and the reliability project, built into one repository at ``output``.

    With ``checkpoints``, whisper and stable_diffusion are built to load those tiny random checkpoints, and
    ``whisper`` decodes at most :data:`WHISPER_MAX_NEW_TOKENS` tokens.
    """
    with pytest.MonkeyPatch.context() as env:
        if checkpoints is not None:
            env.setenv("PBKIT_WHISPER_CHECKPOINT", str(checkpoints.whisper))
            env.setenv("PBKIT_SD_CHECKPOINT", str(checkpoints.stable_diffusion))
        build(EXAMPLE_MODELS, output, clean=True)
    build(RELIABILITY_PROJECT, output)
    whisper_config = output / "whisper" / "config.pbtxt"
    if checkpoints is not None and whisper_config.is_file():
        config = read_config(whisper_config)
        config.parameters["max_new_tokens"].string_value = str(WHISPER_MAX_NEW_TOKENS)
        whisper_config.write_text(render(config), encoding="utf-8")
    problems = check_repository(output)
    assert problems == [], problems
    return output


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    return TinyCheckpoints.write(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="session")
def reliability_repository(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoints: TinyCheckpoints
) -> Path:
    return build_reliability_repository(tmp_path_factory.mktemp("reliability") / "repo", tiny_checkpoints)


#: The models the fuzzing and soak tests use (the fault tests start their own server).
SERVED_MODELS = (
    "embedding",
    "embedding_tokenizer",
    "embedding_encoder",
    "embedding_pooling",
    "whisper",
    "whisper_encoder",
    "whisper_decoder",
    "stable_diffusion",
    "text_encoder",
    "unet",
    "vae_decoder",
    "fuzz_target",
    "soak_batcher",
)


@pytest.fixture(scope="session")
def triton(reliability_repository: Path) -> Iterator[object]:
    """A real tritonserver on the reliability repository, serving :data:`SERVED_MODELS`."""
    from pbkit.testing.server import TritonServer

    with TritonServer(reliability_repository, load_models=SERVED_MODELS, timeout=120, stop_grace=5) as server:
        yield server


@pytest.fixture(scope="session")
def local_triton(reliability_repository: Path) -> Iterator[object]:
    """The same repository served in-process."""
    from pbkit.testing.local import LocalTriton

    with LocalTriton(reliability_repository, models=SERVED_MODELS, timeout=120) as local:
        yield local


@pytest.fixture(scope="session")
def embedding_references() -> EmbeddingReferences:
    return EmbeddingReferences()


@pytest.fixture(scope="session")
def fuzz_statistics() -> Iterator[FuzzStatistics]:
    statistics = FuzzStatistics()
    yield statistics
    report = os.environ.get("PBKIT_RELIABILITY_REPORT")
    if report:
        Path(report).write_text(json.dumps(statistics.to_json(), indent=2, sort_keys=True) + "\n")
