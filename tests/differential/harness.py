"""Scenarios run against several :class:`~pbkit.testing.client.TritonClient` s, and their comparison.

A scenario is a function of a client; what it returns (outputs, lists of stream parts, readiness
flags...) or the :class:`~pbkit.testing.client.InferError` it raises is its *observation*. Two
observations match when the values are equal (numpy arrays: same dtype, shape and elements) or when
both failed with the same code and the scenario's expected text appears in both messages (and,
unless ``same_message=False``, the messages are equal).

To add a repository: register it in :data:`REPOSITORIES` (a folder, or a builder such as
:func:`build_with_pbkit`) and write a test module with its scenarios that uses the ``local_for`` and
``server_for`` fixtures (see ``test_examples_differential.py`` and ``test_core_differential.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pbkit.testing.client import InferError, TritonClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def build_with_pbkit(project: Path) -> Callable[[Path], Path]:
    """A builder for :data:`REPOSITORIES`: ``pbkit build <project> -o <folder>``, returning the folder."""

    def build(folder: Path) -> Path:
        completed = subprocess.run(
            [sys.executable, "-m", "pbkit.cli.main", "build", str(project), "-o", str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"pbkit build {project} failed:\n{completed.stdout}\n{completed.stderr}")
        return folder

    return build


#: Repositories the differential suite serves, by key: a folder, or a builder that writes one into the
#: (empty) folder it is given and returns it.
REPOSITORIES: dict[str, Path | Callable[[Path], Path]] = {
    "examples": FIXTURES / "python_backend_examples",
    "core": build_with_pbkit(FIXTURES / "core_project"),
}


@dataclass(frozen=True)
class Scenario:
    """One call (or a few) made identically on every client."""

    name: str
    call: Callable[[TritonClient], Any]
    #: The code the call must fail with on every client (None: it must succeed).
    code: str | None = None
    #: Text (the model's own words, or Triton's) every error message must contain.
    contains: str | None = None
    #: Whether whole error messages must be equal, not only contain ``contains``.
    same_message: bool = True
    #: Whether output names must come in the same order (pbkit models order outputs by a Python set).
    same_order: bool = True

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Observation:
    """What a scenario did on one client."""

    value: Any = None
    code: str | None = None
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.code is not None


def observe(scenario: Scenario, client: TritonClient) -> Observation:
    """Run ``scenario`` on ``client``."""
    try:
        return Observation(value=scenario.call(client))
    except InferError as error:
        return Observation(code=error.code, message=error.message)


def check_expectation(scenario: Scenario, seen: Observation, where: str) -> None:
    """The observation is what the scenario declares (success, or its code and text)."""
    if scenario.code is None:
        assert not seen.failed, f"{scenario.name} on {where} failed: [{seen.code}] {seen.message}"
        return
    assert seen.failed, f"{scenario.name} on {where} succeeded, expected {scenario.code}: {seen.value!r}"
    assert seen.code == scenario.code, (
        f"{scenario.name} on {where}: code {seen.code}, expected {scenario.code}"
    )
    if scenario.contains is not None:
        assert scenario.contains in seen.message, f"{scenario.name} on {where}: {seen.message!r}"


def assert_same_observation(scenario: Scenario, local: Observation, server: Observation) -> None:
    """``local`` (LocalTriton) matches ``server`` (tritonserver)."""
    check_expectation(scenario, server, "the server")
    check_expectation(scenario, local, "LocalTriton")
    if server.failed:
        assert local.code == server.code, (
            f"LocalTriton {local.code}: {local.message!r}; server {server.code}: {server.message!r}"
        )
        if scenario.same_message:
            assert normalize_message(local.message) == normalize_message(server.message), (
                f"messages differ:\nLocalTriton: {local.message!r}\nserver:      {server.message!r}"
            )
        return
    assert_same_value(local.value, server.value, scenario.name, ordered=scenario.same_order)


def normalize_message(message: str) -> str:
    """Drop what legitimately differs between processes (object addresses)."""
    return re.sub(r" at 0x[0-9a-f]+", "", message)


def assert_same_value(local: Any, server: Any, path: str, ordered: bool = True) -> None:
    """Deep equality; arrays must agree in dtype, shape and elements; mappings in key order if ``ordered``."""
    if isinstance(server, np.ndarray) or isinstance(local, np.ndarray):
        assert isinstance(local, np.ndarray) and isinstance(server, np.ndarray), (
            f"{path}: {local!r} vs {server!r}"
        )
        assert local.dtype == server.dtype, f"{path}: dtype {local.dtype} vs {server.dtype}"
        assert local.shape == server.shape, f"{path}: shape {local.shape} vs {server.shape}"
        assert local.tolist() == server.tolist(), f"{path}: {local!r} vs {server!r}"
        return
    if isinstance(server, Mapping):
        assert isinstance(local, Mapping), f"{path}: {local!r} vs {server!r}"
        keys_local, keys_server = (list(local), list(server)) if ordered else (sorted(local), sorted(server))
        assert keys_local == keys_server, f"{path}: keys {list(local)} vs {list(server)}"
        for key in server:
            assert_same_value(local[key], server[key], f"{path}[{key!r}]", ordered)
        return
    if isinstance(server, (list, tuple)):
        assert type(local) is type(server) and len(local) == len(server), f"{path}: {local!r} vs {server!r}"
        for index, (left, right) in enumerate(zip(local, server, strict=True)):
            assert_same_value(left, right, f"{path}[{index}]", ordered)
        return
    assert local == server, f"{path}: {local!r} vs {server!r}"
