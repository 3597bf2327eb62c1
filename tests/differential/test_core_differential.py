"""Models built by ``pbkit build`` from the core test project, on LocalTriton and on tritonserver.

The pbkit runtime lists a response's outputs in the order of ``requested_output_names()``, a Python
set, so their order changes from one process to the next: outputs are compared by name only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from pbkit.spec.dtypes import DataType
from pbkit.testing.client import TritonClient

from .harness import Scenario, assert_same_observation, check_expectation, observe

REPOSITORY = "core"
NUMERIC = {t.value: t.numpy for t in DataType if t is not DataType.BYTES}


def echo_all(client: TritonClient) -> Any:
    inputs: dict[str, np.ndarray] = {f"IN_{name}": np.ones((2, 3), dtype) for name, dtype in NUMERIC.items()}
    inputs["IN_BYTES"] = np.array([[b"a", b"", b"\xff"], [b"b", b"c", b"d"]], dtype=object)
    return client.infer("echo_all", inputs)


def bad_outputs(mode: bytes) -> Any:
    return lambda c: c.infer("bad_outputs", {"MODE": np.array([[mode]], dtype=object)})


SCENARIOS = [
    Scenario("every dtype round-trips", echo_all),
    Scenario(
        "batched scale", lambda c: c.infer("scale", {"A": np.arange(6, dtype=np.float32).reshape(2, 3)})
    ),
    Scenario("optional input absent", lambda c: c.infer("optionals", {"X": np.ones((1, 2), np.float32)})),
    Scenario(
        "optional input present",
        lambda c: c.infer(
            "optionals", {"X": np.ones((1, 2), np.float32), "Z": np.full((1, 2), 5, np.float32)}
        ),
    ),
    Scenario("flaky success", lambda c: c.infer("flaky", {"X": np.array([[4.0]], np.float32)})),
    Scenario(
        "predict raises",
        lambda c: c.infer("flaky", {"X": np.array([[-4.0]], np.float32)}),
        "INTERNAL",
        "cannot take the square root of -4.0",
    ),
    Scenario(
        "validate refuses",
        lambda c: c.infer("flaky", {"X": np.array([[np.nan]], np.float32)}),
        "INVALID_ARG",
        "expected finite numbers, got NaN",
    ),
    Scenario(
        "no batch dimension",
        lambda c: c.infer("no_batch", {"TEXT": np.array([b"a", b"b", b"c"], dtype=object)}),
    ),
    Scenario(
        "request id and parameters reach predict",
        lambda c: c.infer(
            "request_info",
            {"X": np.ones((2, 1), np.float32)},
            request_id="req-7",
            parameters={"tag": "blue"},
        ),
    ),
    Scenario(
        "the server's shape check names the request id",
        lambda c: c.infer("scale", {"A": np.ones((1, 4), np.float32)}, request_id="req-9"),
        "INVALID_ARG",
        "[request id: req-9]",
    ),
    Scenario("good outputs", bad_outputs(b"ok")),
    Scenario("output with a wrong name", bad_outputs(b"name"), "INTERNAL"),
    Scenario("output with a wrong dtype", bad_outputs(b"dtype"), "INTERNAL"),
    Scenario("output with a wrong shape", bad_outputs(b"shape"), "INTERNAL"),
    Scenario("output with extra rows", bad_outputs(b"rows"), "INTERNAL"),
    Scenario("streamed pieces", lambda c: list(c.stream("countdown", {"N": np.array([[3]], np.int64)}))),
    Scenario("ragged request", lambda c: c.infer("ragged", {"IDS": np.array([[1, 2, 3]], np.int64)})),
]


@pytest.fixture(scope="module")
def local(local_for):  # type: ignore[no-untyped-def]
    return local_for(REPOSITORY)


@pytest.fixture(scope="module")
def server(server_for):  # type: ignore[no-untyped-def]
    return server_for(REPOSITORY)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_core_scenario_locally(scenario: Scenario, local) -> None:  # type: ignore[no-untyped-def]
    check_expectation(scenario, observe(scenario, local), "LocalTriton")


@pytest.mark.server
@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_core_scenario_matches_server(scenario: Scenario, local, server) -> None:  # type: ignore[no-untyped-def]
    unordered = dataclasses.replace(scenario, same_order=False)
    assert_same_observation(unordered, observe(scenario, local), observe(scenario, server))
