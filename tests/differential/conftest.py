"""One LocalTriton and one real tritonserver per registered repository, shared by the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pbkit.testing.client import TritonClient
from pbkit.testing.local import LocalTriton

from .harness import REPOSITORIES


@pytest.fixture(scope="session")
def repository_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``repository_for(key)``: the folder of ``REPOSITORIES[key]``, built once per session if needed."""
    folders: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in folders:
            source = REPOSITORIES[key]
            folders[key] = (
                source if isinstance(source, Path) else source(tmp_path_factory.mktemp(key) / "repo")
            )
        return folders[key]

    return get


@pytest.fixture(scope="session")
def local_for(repository_for: Callable[[str], Path]) -> Iterator[Callable[[str], LocalTriton]]:
    """``local_for(key)``: a LocalTriton on ``REPOSITORIES[key]``, started once per session."""
    started: dict[str, LocalTriton] = {}

    def get(key: str) -> LocalTriton:
        if key not in started:
            started[key] = LocalTriton(repository_for(key), timeout=60)
        return started[key]

    yield get
    for local in started.values():
        local.close()


@pytest.fixture(scope="session")
def server_for(repository_for: Callable[[str], Path]) -> Iterator[Callable[[str], TritonClient]]:
    """``server_for(key)``: a real tritonserver on ``REPOSITORIES[key]`` (gRPC view), started once per session."""
    from pbkit.testing.server import TritonServer

    started: dict[str, TritonServer] = {}

    def get(key: str) -> TritonClient:
        if key not in started:
            server = TritonServer(repository_for(key), timeout=60)
            server.start()
            started[key] = server
        return started[key]

    yield get
    for server in started.values():
        server.stop()
