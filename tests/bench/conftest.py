"""A real tritonserver serving the bench fixture models, shared by this folder's server tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURE_MODELS = Path(__file__).resolve().parent / "fixture_models"


@pytest.fixture(scope="session")
def bench_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pbkit.build import build
    from pbkit.testing.server import TritonServer

    repository = tmp_path_factory.mktemp("bench_repository")
    build(FIXTURE_MODELS, repository)
    with TritonServer(repository) as server:
        yield server
