{% set dtype = cookiecutter.dtype %}
{% set is_float = dtype in ["FP16", "FP32", "FP64"] %}
{% set is_int = dtype not in ["FP16", "FP32", "FP64", "BOOL", "BYTES"] %}
{% set numpy_type = {"FP16": "float16", "FP32": "float32", "FP64": "float64", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT8": "uint8", "BOOL": "bool_", "BYTES": "object_"}[dtype] %}
{% set shape = cookiecutter.dims.replace(" ", "").replace("-1", "3").split(",") %}
"""Tests for the ``{{ cookiecutter.model_name }}`` model.

Tests taking ``triton`` run twice: in-process on ``LocalTriton``, and on a real tritonserver (that run is
marked ``server``; ``python -m pytest -m "not server"`` leaves it out). ``conftest.py`` builds this project
into the repository both serve.
"""

import numpy as np
import pytest
from pbkit.testing import InferError, TritonClient
{% if cookiecutter.batching and not cookiecutter.decoupled %}
from pbkit.testing.local import LocalTriton
{% endif %}
from pbkit.testing.server import TritonServer

MODEL = "{{ cookiecutter.model_name }}"
INPUT = "{{ cookiecutter.input_name }}"
OUTPUT = "{{ cookiecutter.output_name }}"
#: The input's dims, with 3 for each variable (-1) dim.
SHAPE = ({{ shape | join(", ") }}{{ "," if shape | length == 1 }})
{% if cookiecutter.decoupled %}
#: Responses per request: the model's ``responses`` parameter.
RESPONSES = 3
{% endif %}


{% if cookiecutter.batching %}
def example(rows: int = 2) -> np.ndarray:
    """An input holding ``rows`` batch rows, with edge values."""
    shape = (rows, *SHAPE)
{% else %}
def example() -> np.ndarray:
    """An input (the model does not batch, so there is no batch axis), with edge values."""
    shape = SHAPE
{% endif %}
    count = int(np.prod(shape))
{% if dtype == "BYTES" %}
    values = [b"hello", "grüße".encode(), b"", b"MiXeD 42"]
{% elif dtype == "BOOL" %}
    values = [True, False, False]
{% elif is_float %}
    values = [-2.5, -1.0, 0.0, 0.5, 1.0, 3.25, 100.0]
{% else %}
    info = np.iinfo(np.{{ numpy_type }})
    values = [info.min, info.min // 2, 0, 1, info.max // 2, info.max // 2 + 1, info.max]
{% endif %}
    return np.array([values[i % len(values)] for i in range(count)], dtype=np.{{ numpy_type }}).reshape(shape)


def expected(values: np.ndarray) -> np.ndarray:
    """What the model computes, written out independently of its code."""
{% if dtype == "BYTES" %}
    upper = [value.decode("utf-8").upper().encode("utf-8") for value in values.reshape(-1)]
    return np.array(upper, dtype=np.object_).reshape(values.shape)
{% elif dtype == "BOOL" %}
    return np.logical_not(values)
{% elif is_float %}
    return values * 2
{% else %}
    bits = 8 * values.itemsize

    def doubled(value: int) -> int:
        wrapped = (2 * value) % 2**bits
{% if dtype.startswith("INT") %}
        return wrapped - 2**bits if wrapped >= 2 ** (bits - 1) else wrapped
{% else %}
        return wrapped
{% endif %}

    return np.array([doubled(int(v)) for v in values.reshape(-1)], dtype=values.dtype).reshape(values.shape)
{% endif %}


def test_model_is_ready(triton: TritonClient) -> None:
    assert triton.is_model_ready(MODEL)


{% if cookiecutter.decoupled %}
def test_streams_the_result(triton: TritonClient) -> None:
    values = example()
    responses = list(triton.stream(MODEL, {INPUT: values}))
    assert len(responses) == RESPONSES
    for response in responses:
        np.testing.assert_array_equal(response[OUTPUT], expected(values))
        assert response[OUTPUT].dtype == values.dtype
{% else %}
def test_infer(triton: TritonClient) -> None:
    values = example()
    result = triton.infer(MODEL, {INPUT: values})
    np.testing.assert_array_equal(result[OUTPUT], expected(values))
    assert result[OUTPUT].dtype == values.dtype
{% endif %}


def test_wrong_shape_is_rejected(triton: TritonClient) -> None:
    with pytest.raises(InferError) as caught:
{% if cookiecutter.decoupled %}
        list(triton.stream(MODEL, {INPUT: example()[..., np.newaxis]}))
{% else %}
        triton.infer(MODEL, {INPUT: example()[..., np.newaxis]})
{% endif %}
    assert caught.value.code == "INVALID_ARG"
{% if is_float or dtype == "BYTES" %}


def test_invalid_values_fail_only_that_request(triton: TritonClient) -> None:
    bad = example()
{% if is_float %}
    bad.flat[0] = np.nan
{% else %}
    bad.flat[0] = b"\xff not UTF-8"
{% endif %}
    with pytest.raises(InferError) as caught:
{% if cookiecutter.decoupled %}
        list(triton.stream(MODEL, {INPUT: bad}))
    # A gRPC stream carries no error code for the model's own errors (it reads UNKNOWN): check the message.
    assert "{{ cookiecutter.input_name }} must" in caught.value.message
    good = example()
    responses = list(triton.stream(MODEL, {INPUT: good}))
    np.testing.assert_array_equal(responses[0][OUTPUT], expected(good))
{% else %}
        triton.infer(MODEL, {INPUT: bad})
    assert caught.value.code == "INVALID_ARG"
    assert "{{ cookiecutter.input_name }} must" in caught.value.message
    good = example()
    np.testing.assert_array_equal(triton.infer(MODEL, {INPUT: good})[OUTPUT], expected(good))
{% endif %}
{% endif %}
{% if cookiecutter.batching and not cookiecutter.decoupled %}


def test_requests_are_batched_together(local_triton: LocalTriton) -> None:
    requests = [{INPUT: example(rows=1 + i % 2)} for i in range(4)]
    results = local_triton.infer_many(MODEL, requests)
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result[OUTPUT], expected(request[INPUT]))
    assert local_triton.batch_sizes(MODEL)[-1] == len(requests)
{% endif %}


@pytest.mark.server
{% if cookiecutter.decoupled %}
def test_server_stays_healthy(triton_server: TritonServer) -> None:
    values = example()
    for _ in range(3):
        assert len(list(triton_server.stream(MODEL, {INPUT: values}))) == RESPONSES
    assert triton_server.health().healthy, triton_server.health().describe()
{% else %}
def test_server_answers_over_http_and_stays_healthy(triton_server: TritonServer) -> None:
    values = example()
    result = triton_server.client("http").infer(MODEL, {INPUT: values})
    np.testing.assert_array_equal(result[OUTPUT], expected(values))
    assert triton_server.health().healthy, triton_server.health().describe()
{% endif %}
