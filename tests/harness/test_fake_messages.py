"""TritonError, InferenceRequest/InferenceResponse, the response sender and the BLS response iterator."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest

from pbkit.testing.fake import (
    InferenceRequest,
    InferenceResponse,
    PreferredMemory,
    ResponseIterator,
    Tensor,
    TritonError,
    TritonModelException,
    pb_utils,
)
from pbkit.testing.fake.messages import InferenceResponseSender, error_response

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def test_triton_error_codes_and_arguments() -> None:
    codes = [
        "UNKNOWN",
        "INTERNAL",
        "NOT_FOUND",
        "INVALID_ARG",
        "UNAVAILABLE",
        "UNSUPPORTED",
        "ALREADY_EXISTS",
    ]
    assert [int(getattr(TritonError, name)) for name in [*codes, "CANCELLED"]] == list(range(8))
    error = TritonError("boom")
    assert error.code() == TritonError.INTERNAL and error.message() == "boom"
    assert TritonError("m", TritonError.NOT_FOUND).code().name == "NOT_FOUND"
    with pytest.raises(TypeError, match="incompatible constructor arguments"):
        TritonError(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TritonError("m", 3)  # type: ignore[arg-type]
    assert issubclass(TritonModelException, Exception)


def test_inference_response_arguments() -> None:
    empty = InferenceResponse()
    assert empty.output_tensors() == [] and not empty.has_error() and empty.error() is None
    assert empty.parameters() == "{}"
    tensor = Tensor("a", np.zeros(1))
    response = InferenceResponse((tensor,))
    assert response.output_tensors() == [tensor]
    assert response.output_tensors() is not response.output_tensors()
    failed = InferenceResponse([tensor], TritonError("bad"))
    assert failed.has_error() and failed.error().message() == "bad"  # type: ignore[union-attr]
    with pytest.raises(
        TritonModelException, match="Output tensor for inference response should not be empty"
    ):
        InferenceResponse([None])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        InferenceResponse(error="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        InferenceResponse(output_tensors=[1])  # type: ignore[list-item]
    assert json.loads(InferenceResponse(parameters={"k": 1}).parameters()) == {"k": 1}


def test_bls_request_defaults() -> None:
    request = InferenceRequest(model_name="m", requested_output_names=["B", "A"], inputs=[])
    assert request.request_id() == "" and request.correlation_id() == 0
    assert request.flags() == 0 and request.timeout() == 0
    assert request.parameters() == "{}"
    assert request.requested_output_names() == {"A", "B"}
    assert request.inputs() == [] and request.trace().get_context() is None
    assert not request.is_cancelled()
    request.set_flags(pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START)
    assert request.flags() == 1
    with_params = InferenceRequest(
        model_name="m",
        requested_output_names=[],
        inputs=[],
        parameters={"z": 1, "a": True},
        correlation_id="seq",
        preferred_memory=PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU),
        timeout=5,
    )
    assert with_params.parameters() == '{"z": 1, "a": true}'
    assert with_params.correlation_id() == "seq" and with_params.timeout() == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"requested_output_names": [], "inputs": []}, TypeError, "incompatible constructor arguments"),
        ({"model_name": "m", "inputs": []}, TypeError, "incompatible constructor arguments"),
        ({"model_name": "m", "requested_output_names": [], "inputs": [], "correlation_id": 1.5}, TritonModelException, "Correlation ID must be integer or string"),
        ({"model_name": "m", "requested_output_names": [], "inputs": [], "parameters": {"a": 1.5}}, TritonModelException, "values to have type bool/int/str, found type <class 'float'>"),
        ({"model_name": "m", "requested_output_names": [], "inputs": [], "parameters": {1: 1}}, TritonModelException, "keys to have type str, found type <class 'int'>"),
        ({"model_name": "m", "requested_output_names": [""], "inputs": []}, TritonModelException, "Requested output name for request with id '' and model name 'm' should not be empty."),
        ({"model_name": "m", "requested_output_names": [], "inputs": [None]}, TritonModelException, "Input tensor for request with id '' and model name 'm' should not be empty."),
        ({"model_name": "m", "requested_output_names": [], "inputs": [], "flags": -1}, TypeError, "incompatible"),
    ],
)  # fmt: skip
def test_bls_request_argument_errors(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        InferenceRequest(**kwargs)  # type: ignore[arg-type]


def test_exec_outside_a_model_and_async_exec_without_a_loop() -> None:
    request = InferenceRequest(model_name="m", requested_output_names=[], inputs=[])
    with pytest.raises(TritonModelException, match="BLS is only supported during the 'execute' function"):
        request.exec()
    with pytest.raises(RuntimeError, match="no running event loop"):
        request.async_exec()
    with pytest.raises(TypeError, match="incompatible function arguments"):
        request.exec(decoupled="yes")  # type: ignore[arg-type]


def test_async_exec_inside_a_loop_runs_exec_in_the_executor() -> None:
    request = InferenceRequest(model_name="m", requested_output_names=[], inputs=[])

    async def call() -> None:
        await request.async_exec()

    with pytest.raises(TritonModelException, match="BLS is only supported"):
        asyncio.run(call())


def test_bls_request_sender_cannot_send() -> None:
    sender = InferenceRequest(model_name="m", requested_output_names=[], inputs=[]).get_response_sender()
    with pytest.raises(TritonModelException, match="no reference to the decoupled state of the model"):
        sender.send(InferenceResponse())


def sender(
    decoupled: bool, requested: frozenset[str] = frozenset({"A"})
) -> tuple[InferenceResponseSender, list]:
    sent: list = []
    return (
        InferenceResponseSender(
            is_decoupled=decoupled,
            requested_output_names=requested,
            deliver=lambda response, flags: sent.append((response, flags)),
            is_cancelled=lambda: False,
        ),
        sent,
    )


def test_sender_argument_rules() -> None:
    s, _ = sender(decoupled=True)
    with pytest.raises(TritonModelException, match="Unsupported flag provided"):
        s.send(InferenceResponse(), flags=3)
    with pytest.raises(TritonModelException, match="must be provided when the response flags is set to zero"):
        s.send()
    with pytest.raises(TypeError):
        s.send("not a response")  # type: ignore[arg-type]


def test_non_decoupled_sender_sends_one_response() -> None:
    s, sent = sender(decoupled=False)
    with pytest.raises(TritonModelException, match="cannot send complete final before sending a response"):
        s.send(flags=FINAL)
    s.send(InferenceResponse([Tensor("A", np.zeros(1)), Tensor("B", np.ones(1))]))
    with pytest.raises(TritonModelException, match="cannot send more than one response"):
        s.send(InferenceResponse())
    s.send(flags=FINAL)
    with pytest.raises(TritonModelException, match="Response sender has been closed"):
        s.send(flags=FINAL)
    assert [t.name() for t in sent[0][0].output_tensors()] == ["A"]  # pruned to the requested outputs
    assert [flags for _, flags in sent] == [0, FINAL]


def test_decoupled_sender_is_closed_by_the_final_flag() -> None:
    s, sent = sender(decoupled=True)
    s.send(InferenceResponse())
    s.send(InferenceResponse())
    s.send(InferenceResponse(), flags=FINAL)
    with pytest.raises(TritonModelException, match="Response sender has been closed"):
        s.send(InferenceResponse())
    assert len(sent) == 3 and not s.is_cancelled()


def test_response_iterator_replays_after_the_end() -> None:
    iterator = ResponseIterator()
    first = InferenceResponse()
    first._is_last = False
    last = error_response("done")
    iterator._put(first)
    iterator._put(last)
    assert list(iterator) == [first, last]
    assert list(iterator) == [first, last]
    cancelled = []
    ResponseIterator(cancel=lambda: cancelled.append(True)).cancel()
    assert cancelled == [True]
