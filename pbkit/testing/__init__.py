"""Test Triton models with pytest, in-process or on a real server, through one interface.

* :class:`LocalTriton` loads a model repository in this process with a faithful fake of
  ``triton_python_backend_utils`` (no server, no GPU);
* :class:`TritonServer` starts a real tritonserver on free local ports;
* both implement :class:`TritonClient` and raise :class:`InferError`, so a test runs
  against either; the pytest plugin's ``triton`` fixture runs it against both;
* :class:`ProjectModules` imports a model project's helper modules as Triton does, so projects with
  same-named modules (``networks.py``) can be tested in one session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import ERROR_CODES, InferError, TritonClient
from .project import ProjectModules

if TYPE_CHECKING:
    from .local import LocalTriton
    from .server import TritonServer

__all__ = ["ERROR_CODES", "InferError", "LocalTriton", "ProjectModules", "TritonClient", "TritonServer"]


def __getattr__(name: str) -> Any:
    if name == "LocalTriton":
        from .local import LocalTriton

        return LocalTriton
    if name == "TritonServer":
        from .server import TritonServer

        return TritonServer
    raise AttributeError(f"module 'pbkit.testing' has no attribute {name!r}")
