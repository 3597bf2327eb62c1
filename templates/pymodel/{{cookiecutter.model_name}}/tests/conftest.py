"""Builds this project into the model repository that the pbkit test fixtures serve.

The pbkit pytest plugin (installed with pbkit) provides ``local_triton``, ``triton_server`` and ``triton``;
they serve the repository this ``triton_repository`` fixture returns.
"""

from pathlib import Path

import pytest
from pbkit.build import build

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def triton_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pbkit build`` of this folder, once per test session."""
    repository = tmp_path_factory.mktemp("model_repository")
    build(PROJECT, repository)
    return repository
