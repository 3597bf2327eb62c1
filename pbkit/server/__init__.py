"""Run a real local tritonserver: locate it, launch and stop it, and serve a repository in the foreground."""

from .locate import TritonInstallation, TritonNotFoundError, locate_tritonserver
from .process import (
    HealthReport,
    ModelState,
    StubProcess,
    TritonProcess,
    TritonStartError,
    find_stub_processes,
)
from .serve import format_model_table, serve_repository

__all__ = [
    "HealthReport",
    "ModelState",
    "StubProcess",
    "TritonInstallation",
    "TritonNotFoundError",
    "TritonProcess",
    "TritonStartError",
    "find_stub_processes",
    "format_model_table",
    "locate_tritonserver",
    "serve_repository",
]
