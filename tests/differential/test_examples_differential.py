"""The python_backend-style example repository, scenario by scenario, on LocalTriton and on tritonserver.

``test_scenario_locally`` checks each scenario's declared outcome on LocalTriton alone (fast, no
server); ``test_scenario_matches_server`` runs it on both and requires the same observation.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from pbkit.testing.client import TritonClient

from .harness import Scenario, assert_same_observation, check_expectation, observe

REPOSITORY = "examples"
V = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
W = np.array([0.5, 1.5, -2.0, 8.0], np.float32)
ORDER_NAMES = ["alpha", "beta", "gamma", "delta", "epsilon"]


def add_sub(**overrides: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {"INPUT0": V, "INPUT1": W}
    inputs.update(overrides)
    return {k: v for k, v in inputs.items() if v is not None}


def report(client: TritonClient) -> list[str]:
    lines = client.infer("api_probe", {"X": np.array([1.0, 2.0], np.float32)})["REPORT"]
    return [line.decode() for line in lines]


def args_of(client: TritonClient) -> dict[str, Any]:
    out = client.infer("args_dump", {"X": np.zeros((1, 2, 3), np.float32)})
    args = json.loads(out["ARGS"][0][0])
    # The config is compared as text, except the order of `parameters` (a protobuf map: unspecified order).
    config = json.loads(args["model_config"])
    parameters = config["parameters"]
    config["parameters"] = "<parameters>"
    args["model_config"] = args["model_config"].replace(
        json.dumps(parameters, separators=(",", ":")), '"<parameters>"'
    )
    args["parameters"] = sorted(parameters.items())
    assert json.dumps(config, separators=(",", ":")) == args["model_config"]
    return args


def readiness(client: TritonClient) -> tuple[bool, ...]:
    return (
        client.is_model_ready("add_sub"),
        client.is_model_ready("add_sub", 1),
        client.is_model_ready("add_sub", 2),
        client.is_model_ready("versioned", 1),
        client.is_model_ready("versioned", "2"),
        client.is_model_ready("broken_init"),
        client.is_model_ready("hidden_names"),
        client.is_model_ready("no_such_model"),
        client.is_model_ready("ensemble_add_scale"),
        client.is_model_ready("ensemble_unversioned"),
    )


def request_parameters(client: TritonClient) -> Any:
    # gRPC carries parameters in a protobuf map, whose order is unspecified: compare them parsed.
    parameters = {"z_last": "v", "count": 3, "flag": True}
    out = client.infer("request_parameters", {"X": np.ones(1, np.float32)}, parameters=parameters)
    return sorted(json.loads(out["PARAMETERS"][0]).items()), out["DETAILS"]


def bf16_input(client: TritonClient) -> Any:
    import ml_dtypes

    return client.infer("bf16_in", {"HALF": np.array([1.5, -2.0, 0.1], ml_dtypes.bfloat16)})


def bls(target: str) -> Any:
    return lambda c: c.infer("bls_probe", {"TARGET": np.array([target.encode()], dtype=object)})


SCENARIOS = [
    # ---------------------------------------------------------------- plain inference and core checks
    Scenario("add_sub", lambda c: c.infer("add_sub", add_sub())),
    Scenario("add_sub one output", lambda c: c.infer("add_sub", add_sub(), outputs=["OUTPUT1"])),
    Scenario(
        "add_sub str inputs are rejected by type",
        lambda c: c.infer("add_sub", add_sub(INPUT0=["a"] * 4)),
        "INVALID_ARG",
        "data-type is 'BYTES'",
    ),
    Scenario(
        "unknown output",
        lambda c: c.infer("add_sub", add_sub(), outputs=["NOPE"]),
        "INVALID_ARG",
        "unexpected inference output 'NOPE'",
    ),
    Scenario(
        "missing input",
        lambda c: c.infer("add_sub", add_sub(INPUT1=None)),
        "INVALID_ARG",
        "missing required input(s) ['INPUT1']",
    ),
    Scenario(
        "unknown input",
        lambda c: c.infer("add_sub", {"INPUT0": V, "BOGUS": W}),
        "INVALID_ARG",
        "unexpected inference input 'BOGUS'",
    ),
    Scenario(
        "extra input",
        lambda c: c.infer("add_sub", add_sub(EXTRA=V)),
        "INVALID_ARG",
        "expected 2 inputs but got 3 inputs",
    ),
    Scenario(
        "two extra inputs",
        lambda c: c.infer("add_sub", add_sub(A=V, B=V)),
        "INVALID_ARG",
        "but missing required input(s) ]",
    ),
    Scenario(
        "input order seen by the model",
        lambda c: c.infer("input_order", {n: np.ones(1, np.float32) for n in ORDER_NAMES}),
    ),
    Scenario(
        "input order, reversed request",
        lambda c: c.infer("input_order", {n: np.ones(1, np.float32) for n in reversed(ORDER_NAMES)}),
    ),
    Scenario(
        "wrong dtype",
        lambda c: c.infer("add_sub", add_sub(INPUT1=W.astype(np.float64))),
        "INVALID_ARG",
        "data-type is 'FP64', but model 'add_sub' expects 'FP32'",
    ),
    Scenario(
        "wrong shape",
        lambda c: c.infer("add_sub", add_sub(INPUT1=np.ones(5, np.float32))),
        "INVALID_ARG",
        "Expected [4], got [5]",
    ),
    Scenario(
        "batched",
        lambda c: c.infer("add_sub_batched", {"INPUT0": np.stack([V, W, V]), "INPUT1": np.stack([W, W, V])}),
    ),
    Scenario(
        "batch too large",
        lambda c: c.infer(
            "add_sub_batched", {"INPUT0": np.ones((9, 4), np.float32), "INPUT1": np.ones((9, 4), np.float32)}
        ),
        "INVALID_ARG",
        "batch-size must be <= 8",
    ),
    Scenario(
        "batch dim missing",
        lambda c: c.infer("add_sub_batched", add_sub()),
        "INVALID_ARG",
        "Expected [-1,4], got [4]",
    ),
    Scenario(
        "batch sizes differ",
        lambda c: c.infer(
            "add_sub_batched", {"INPUT0": np.ones((2, 4), np.float32), "INPUT1": np.ones((3, 4), np.float32)}
        ),
        "INVALID_ARG",
        "batch size does not match other inputs",
    ),
    Scenario(
        "empty batch",
        lambda c: c.infer(
            "add_sub_batched",
            {"INPUT0": np.zeros((0, 4), np.float32), "INPUT1": np.zeros((0, 4), np.float32)},
        ),
        "INVALID_ARG",
        "input byte size mismatch for input 'INPUT1' for model 'add_sub_batched'. Expected 16, got 0",
    ),
    Scenario(
        "empty batch of strings",
        lambda c: c.infer(
            "args_dump", {"X": np.zeros((0, 2, 3), np.float32), "LABEL": np.zeros((0, 1), dtype=object)}
        ),
        "INVALID_ARG",
        "expected 1 string elements for inference input 'LABEL' for model 'args_dump', got 0",
    ),
    Scenario(
        "empty variable dimension",
        lambda c: c.infer("args_dump", {"X": np.zeros((1, 2, 0), np.float32)})["ARGS"].shape,
    ),
    Scenario(
        "unknown model",
        lambda c: c.infer("no_such_model", add_sub()),
        "NOT_FOUND",
        "Request for unknown model: 'no_such_model' is not found",
    ),
    Scenario(
        "unknown version",
        lambda c: c.infer("add_sub", add_sub(), version=3),
        "NOT_FOUND",
        "'add_sub' version 3 is not found",
    ),
    Scenario("readiness", readiness),
    # ---------------------------------------------------------------- what execute returns
    Scenario(
        "execute raises",
        lambda c: c.infer("execute_raises", {"IN": V}),
        "INTERNAL",
        "ValueError: the model refused a batch of 1 request(s)",
    ),
    Scenario(
        "error response INVALID_ARG",
        lambda c: c.infer("error_response", {"CODE": np.array([3], np.int32)}),
        "INVALID_ARG",
        "rejected with INVALID_ARG",
    ),
    Scenario(
        "error response NOT_FOUND",
        lambda c: c.infer("error_response", {"CODE": np.array([2], np.int32)}),
        "NOT_FOUND",
        "rejected with NOT_FOUND",
    ),
    Scenario(
        "error response UNAVAILABLE",
        lambda c: c.infer("error_response", {"CODE": np.array([4], np.int32)}),
        "UNAVAILABLE",
        "rejected with UNAVAILABLE",
    ),
    Scenario(
        "error response UNSUPPORTED",
        lambda c: c.infer("error_response", {"CODE": np.array([5], np.int32)}),
        "UNSUPPORTED",
        "rejected with UNSUPPORTED",
    ),
    Scenario(
        "error response default code",
        lambda c: c.infer("error_response", {"CODE": np.array([100], np.int32)}),
        "INTERNAL",
        "an error with the default code",
    ),
    Scenario("normal response", lambda c: c.infer("error_response", {"CODE": np.array([-1], np.int32)})),
    Scenario(
        "too many responses",
        lambda c: c.infer("wrong_count", {"IN": V}),
        "INTERNAL",
        "InferenceRequest(s) size is:1, and InferenceResponse(s) size is:2",
    ),
    Scenario(
        "tuple returned",
        lambda c: c.infer("non_list", {"IN": V}),
        "INTERNAL",
        "Expected a list in the execute return, found type '<class 'tuple'>'.",
    ),
    Scenario(
        "dict returned",
        lambda c: c.infer("wrong_type", {"IN": V}),
        "INTERNAL",
        "found type '<class 'dict'>'.",
    ),
    Scenario("answer through the sender", lambda c: c.infer("sender_final", {"IN": V})),
    Scenario("sender output pruned", lambda c: c.infer("sender_final", {"IN": V}, outputs=["UNREQUESTED"])),
    # ---------------------------------------------------------------- loading
    Scenario(
        "initialize raises",
        lambda c: c.infer("broken_init", {"IN": V}),
        "NOT_FOUND",
        "'broken_init' has no available versions",
    ),
    Scenario(
        "pb_utils names bound after import",
        lambda c: c.infer("hidden_names", {"IN": V}),
        "NOT_FOUND",
        "'hidden_names' has no available versions",
    ),
    Scenario("initialize args", args_of),
    Scenario(
        "auto_complete_config",
        lambda c: c.infer("auto_complete", {"INPUT0": np.stack([V]), "INPUT1": np.stack([W])}),
    ),
    Scenario("version policy all: latest", lambda c: c.infer("versioned", {"X": np.ones(1, np.float32)})),
    Scenario(
        "version policy all: version 1",
        lambda c: c.infer("versioned", {"X": np.ones(1, np.float32)}, version=1),
    ),
    Scenario("two utils.py: twin_a", lambda c: c.infer("twin_a", {"X": np.array([3], np.int32)})),
    Scenario("two utils.py: twin_b", lambda c: c.infer("twin_b", {"X": np.array([3], np.int32)})),
    # ---------------------------------------------------------------- data
    Scenario(
        "BYTES in and out",
        lambda c: c.infer(
            "bytes_echo", {"TEXT": np.array([b"abc", "d\u00e9f".encode(), b"", b"\x00\xff"], dtype=object)}
        ),
    ),
    Scenario(
        "BYTES from str inputs",
        lambda c: c.infer("bytes_echo", {"TEXT": np.array(["plain", "\u00fcnicode"])}),
    ),
    Scenario(
        "BYTES element not bytes",
        lambda c: c.infer("bytes_echo", {"TEXT": np.array([b"ok", 3], dtype=object)}),
        "INVALID_ARG",
        "BYTES elements must be bytes or str, got int",
    ),
    Scenario(
        "optional input absent", lambda c: c.infer("optional_input", {"A": np.array([[1, 2]], np.int64)})
    ),
    Scenario(
        "optional input present",
        lambda c: c.infer(
            "optional_input", {"A": np.array([[1, 2]], np.int64), "B": np.array([[10, 20]], np.int64)}
        ),
    ),
    Scenario("request parameters", request_parameters),
    Scenario(
        "no parameters",
        lambda c: c.infer("request_parameters", {"X": np.ones(1, np.float32)}, outputs=["DETAILS"]),
    ),
    Scenario("BF16 input", bf16_input),
    Scenario(
        "BF16 output", lambda c: c.infer("bf16_out", {"X": np.array([1.0, -2.5, 3.1415927], np.float32)})
    ),
    Scenario("custom metrics", lambda c: c.infer("custom_metrics", {"IN": V})),
    Scenario("pb_utils API inside execute", report),
    # ---------------------------------------------------------------- BLS
    Scenario(
        "BLS sync",
        lambda c: c.infer("bls_sync", {"MODEL_NAME": np.array([b"add_sub"], dtype=object), **add_sub()}),
    ),
    Scenario(
        "BLS sync to a missing model",
        lambda c: c.infer(
            "bls_sync", {"MODEL_NAME": np.array([b"no_such_model"], dtype=object), **add_sub()}
        ),
        "INTERNAL",
        "Model 'no_such_model' is not ready.",
    ),
    Scenario("BLS async", lambda c: c.infer("bls_async", add_sub())),
    Scenario("BLS decoupled", lambda c: c.infer("bls_decoupled", {"IN": np.array([4, 5, 6], np.int32)})),
    Scenario("BLS: missing model", bls("missing")),
    Scenario("BLS: callee raises", bls("raises")),
    Scenario("BLS: callee error response (code lost)", bls("error_response")),
    Scenario("BLS: callee dtype check", bls("dtype")),
    Scenario("BLS: callee missing input", bls("missing_input")),
    Scenario("BLS: decoupled callee without decoupled=True", bls("decoupled")),
    Scenario("BLS: unknown output", bls("bad_output")),
    Scenario("BLS: all outputs", bls("all_outputs")),
    Scenario("BLS: one output", bls("one_output")),
    Scenario("BLS: version 1", bls("version_1")),
    Scenario("BLS: missing version", bls("version_9")),
    Scenario("BLS: ensemble", bls("ensemble")),
    Scenario("BLS: model that failed to load", bls("broken")),
    # ---------------------------------------------------------------- ensembles
    Scenario("ensemble", lambda c: c.infer("ensemble_add_scale", add_sub())),
    Scenario("siblings imported late", lambda c: c.infer("lazy_siblings", {"X": np.array([1], np.int32)})),
    Scenario(
        "ensemble without a version folder",
        lambda c: c.infer("ensemble_unversioned", add_sub()),
        code="NOT_FOUND",
        contains="'ensemble_unversioned' has no available versions",
    ),
    Scenario("ensemble one output", lambda c: c.infer("ensemble_add_scale", add_sub(), outputs=["DIFF"])),
    Scenario(
        "ensemble input check",
        lambda c: c.infer("ensemble_add_scale", add_sub(INPUT1=None)),
        "INVALID_ARG",
        "missing required input(s) ['INPUT1']",
    ),
    Scenario(
        "ensemble step raises",
        lambda c: c.infer("ensemble_failing", {"IN": V}),
        "INTERNAL",
        "ValueError: the model refused a batch of 1 request(s)",
    ),
    Scenario(
        "ensemble step error code",
        lambda c: c.infer("ensemble_error_code", {"CODE": np.array([5], np.int32)}),
        "UNSUPPORTED",
        "rejected with UNSUPPORTED",
    ),
    Scenario(
        "ensemble with a decoupled step",
        lambda c: list(c.stream("ensemble_stream", {"IN": np.array([3, 1, 4], np.int32)})),
    ),
    Scenario(
        "ensemble with a decoupled step, one output",
        lambda c: list(c.stream("ensemble_stream", {"IN": np.array([5, 6], np.int32)}, outputs=["DOUBLED"])),
    ),
    Scenario(
        "infer on an ensemble with a decoupled step",
        lambda c: c.infer("ensemble_stream", {"IN": np.array([3], np.int32)}),
        "UNSUPPORTED",
        "doesn't support models with decoupled transaction policy",
    ),
    # ---------------------------------------------------------------- decoupled and streaming
    Scenario("stream repeat", lambda c: list(c.stream("repeat", {"IN": np.array([4, 2, 9], np.int32)}))),
    Scenario(
        "stream repeat, one output",
        lambda c: list(c.stream("repeat", {"IN": np.array([4, 2], np.int32)}, outputs=["IDX"])),
    ),
    Scenario("stream repeat, nothing", lambda c: list(c.stream("repeat", {"IN": np.zeros(0, np.int32)}))),
    Scenario(
        "stream square from a thread", lambda c: list(c.stream("square", {"IN": np.array([3], np.int32)}))
    ),
    Scenario(
        "stream async execute",
        lambda c: list(c.stream("async_repeat", {"IN": np.array([1, 2, 3], np.int32)})),
    ),
    Scenario("stream a non-decoupled model", lambda c: list(c.stream("add_sub", add_sub()))),
    Scenario(
        "stream error response",
        lambda c: list(c.stream("decoupled_errors", {"MODE": np.array([0], np.int32)})),
        "UNKNOWN",
        "decoupled model rejects this request",
    ),
    Scenario(
        "stream execute raises",
        lambda c: list(c.stream("decoupled_errors", {"MODE": np.array([1], np.int32)})),
        "INTERNAL",
        "RuntimeError: decoupled execute failed",
    ),
    Scenario(
        "stream execute returns a list",
        lambda c: list(c.stream("decoupled_errors", {"MODE": np.array([2], np.int32)})),
        "INTERNAL",
        "is using the decoupled mode and the execute function must return None.",
    ),
    Scenario(
        "stream error after a response",
        lambda c: list(c.stream("decoupled_errors", {"MODE": np.array([3], np.int32)})),
        "UNKNOWN",
        "second response failed",
    ),
    Scenario(
        "stream input check",
        lambda c: list(c.stream("repeat", {"IN": np.array([1.0], np.float32)})),
        "INVALID_ARG",
        "data-type is 'FP32', but model 'repeat' expects 'INT32'",
    ),
    Scenario(
        "stream from a square error",
        lambda c: list(c.stream("square", {"IN": np.array([-1], np.int32)})),
        "UNKNOWN",
        "IN must be non-negative",
    ),
    Scenario(
        "infer on a decoupled model",
        lambda c: c.infer("repeat", {"IN": np.array([1], np.int32)}),
        "UNSUPPORTED",
        "doesn't support models with decoupled transaction policy",
    ),
]


@pytest.fixture(scope="module")
def local(local_for):  # type: ignore[no-untyped-def]
    return local_for(REPOSITORY)


@pytest.fixture(scope="module")
def server(server_for):  # type: ignore[no-untyped-def]
    return server_for(REPOSITORY)


def test_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 30
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_scenario_locally(scenario: Scenario, local) -> None:  # type: ignore[no-untyped-def]
    check_expectation(scenario, observe(scenario, local), "LocalTriton")


@pytest.mark.server
@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_scenario_matches_server(scenario: Scenario, local, server) -> None:  # type: ignore[no-untyped-def]
    assert_same_observation(scenario, observe(scenario, local), observe(scenario, server))
