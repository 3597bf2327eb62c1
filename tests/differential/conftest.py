"""One LocalTriton and one real tritonserver per registered repository, shared by the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pbkit.testing.client import TritonClient
from pbkit.testing.local import LocalTriton

from .harness import REPOSITORIES


@pytest.fixture(scope="session")
def local_for() -> Iterator[Callable[[str], LocalTriton]]:
    """``local_for(key)``: a LocalTriton on ``REPOSITORIES[key]``, started once per session."""
    started: dict[str, LocalTriton] = {}

    def get(key: str) -> LocalTriton:
        if key not in started:
            started[key] = LocalTriton(REPOSITORIES[key], timeout=60)
        return started[key]

    yield get
    for local in started.values():
        local.close()


@pytest.fixture(scope="session")
def server_for() -> Iterator[Callable[[str], TritonClient]]:
    """``server_for(key)``: a real tritonserver on ``REPOSITORIES[key]`` (gRPC view), started once per session."""
    from pbkit.testing.server import TritonServer

    started: dict[str, TritonServer] = {}

    def get(key: str) -> TritonClient:
        if key not in started:
            server = TritonServer(REPOSITORIES[key], timeout=60)
            server.start()
            started[key] = server
        return started[key]

    yield get
    for server in started.values():
        server.stop()
