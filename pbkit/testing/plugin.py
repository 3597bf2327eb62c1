"""pytest plugin (entry point ``pytest11: pbkit``): fixtures that serve a Triton model repository.

Fixtures
--------
``triton_repository`` (session)
    The repository to serve, a :class:`~pathlib.Path`. By default the ``pbkit_repository`` ini option
    (relative to the rootdir); override the fixture to compute it, e.g. after ``pbkit build``.
``local_triton`` (session)
    A :class:`~pbkit.testing.local.LocalTriton` on the repository: in-process, no server needed.
``triton_server`` (session)
    A real :class:`~pbkit.testing.server.TritonServer` on the repository (started on first use,
    about 15 s; stopped at the end of the session).
``triton``
    Parametrized over both: ``"local"`` gives ``local_triton``, ``"server"`` gives ``triton_server``;
    the server variant carries the ``server`` marker, so ``pytest -m "not server"`` runs only the local
    one. Both implement :class:`~pbkit.testing.client.TritonClient`, so one test checks both.

Usage
-----
In ``pyproject.toml``::

    [tool.pytest.ini_options]
    pbkit_repository = "model_repository"

or in a ``conftest.py``::

    @pytest.fixture(scope="session")
    def triton_repository(tmp_path_factory):
        return build_my_repository(tmp_path_factory.mktemp("repo"))

then::

    def test_add_sub(triton):
        out = triton.infer("add_sub", {"INPUT0": a, "INPUT1": b})
        assert (out["OUTPUT0"] == a + b).all()

    def test_batches(local_triton):
        local_triton.infer_many("add_sub_batched", [inputs] * 4)
        assert local_triton.batch_sizes("add_sub_batched")[-1] == 4

Stubs for models that cannot run in-process (TensorRT, ONNX) go to ``LocalTriton``: override
``local_triton`` and construct ``LocalTriton(triton_repository, stubs={...})``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pbkit.testing.client import TritonClient
    from pbkit.testing.local import LocalTriton
    from pbkit.testing.server import TritonServer

INI_OPTION = "pbkit_repository"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_OPTION, "Model repository served by the pbkit fixtures (relative to the rootdir).", default=""
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server: needs the real local tritonserver (slow to start)")


@pytest.fixture(scope="session")
def triton_repository(pytestconfig: pytest.Config) -> Path:
    """The model repository to serve: the ``pbkit_repository`` ini option unless overridden."""
    value = str(pytestconfig.getini(INI_OPTION) or "")
    if not value:
        raise pytest.UsageError(
            f'no model repository: set `{INI_OPTION} = "path"` in the pytest configuration, '
            "or override the `triton_repository` fixture"
        )
    path = Path(value)
    if not path.is_absolute():
        path = pytestconfig.rootpath / path
    if not path.is_dir():
        raise pytest.UsageError(f"{INI_OPTION}: model repository {path} does not exist")
    return path


@pytest.fixture(scope="session")
def local_triton(triton_repository: Path) -> Iterator[LocalTriton]:
    """The repository served in-process by :class:`~pbkit.testing.local.LocalTriton`."""
    from pbkit.testing.local import LocalTriton

    with LocalTriton(triton_repository) as local:
        yield local


@pytest.fixture(scope="session")
def triton_server(triton_repository: Path) -> Iterator[TritonServer]:
    """The repository served by a real tritonserver."""
    from pbkit.testing.server import TritonServer

    with TritonServer(triton_repository) as server:
        yield server


@pytest.fixture(params=["local", pytest.param("server", marks=pytest.mark.server)])
def triton(request: pytest.FixtureRequest) -> TritonClient:
    """The same tests on both: ``local_triton`` and ``triton_server``."""
    name = "local_triton" if request.param == "local" else "triton_server"
    client: TritonClient = request.getfixturevalue(name)
    return client
