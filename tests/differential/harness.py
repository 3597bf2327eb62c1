"""Scenarios run against several :class:`~pbkit.testing.client.TritonClient` s, and their comparison.

A scenario is a function of a client; what it returns (outputs, lists of stream parts, readiness
flags...) or the :class:`~pbkit.testing.client.InferError` it raises is its *observation*. Two
observations match when the values are equal (numpy arrays: same dtype, shape and elements) or when
both failed with the same code and the scenario's expected text appears in both messages (and,
unless ``same_message=False``, the messages are equal).

To add a repository: register it in :data:`REPOSITORIES` and write a test module that parametrizes
over its scenarios with the ``clients_for`` fixture (see ``test_examples_differential.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pbkit.testing.client import InferError, TritonClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

#: Repositories the differential suite serves, by key.
REPOSITORIES: dict[str, Path] = {
    "examples": FIXTURES / "python_backend_examples",
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
    assert_same_value(local.value, server.value, scenario.name)


def normalize_message(message: str) -> str:
    """Drop what legitimately differs between processes (object addresses)."""
    return re.sub(r" at 0x[0-9a-f]+", "", message)


def assert_same_value(local: Any, server: Any, path: str) -> None:
    """Deep equality; arrays must agree in dtype, shape and elements."""
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
        assert list(local) == list(server), f"{path}: keys {list(local)} vs {list(server)}"
        for key in server:
            assert_same_value(local[key], server[key], f"{path}[{key!r}]")
        return
    if isinstance(server, (list, tuple)):
        assert type(local) is type(server) and len(local) == len(server), f"{path}: {local!r} vs {server!r}"
        for index, (left, right) in enumerate(zip(local, server, strict=True)):
            assert_same_value(left, right, f"{path}[{index}]")
        return
    assert local == server, f"{path}: {local!r} vs {server!r}"
