"""The pbkit core on the real local Triton, checked with tritonclient over HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pbkit.build import build
from pbkit.config.check import check_repository
from pbkit.testing.client import InferError
from pbkit.testing.server import TritonServer

pytestmark = pytest.mark.server

CORE_PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "core_project"
MODELS = [
    "echo_all", "scale", "optionals", "flaky", "no_batch", "who_am_i", "bad_outputs", "countdown", "ragged",
    "request_info",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repo = tmp_path_factory.mktemp("core") / "repo"
    build(CORE_PROJECT, repo)
    assert check_repository(repo) == []
    with TritonServer(repo) as running:
        yield running


@pytest.fixture(params=["grpc", "http"])
def client(request: pytest.FixtureRequest, server: TritonServer):  # type: ignore[no-untyped-def]
    return server.client(request.param)


def test_every_model_ready(server: TritonServer) -> None:
    for name in MODELS:
        assert server.is_model_ready(name), name


def test_dtype_matrix(client) -> None:  # type: ignore[no-untyped-def]
    inputs = {
        "IN_BOOL": np.array([[True, False, True]]),
        "IN_UINT8": np.array([[0, 255, 7]], np.uint8),
        "IN_UINT16": np.array([[0, 65535, 7]], np.uint16),
        "IN_UINT32": np.array([[0, 2**32 - 1, 7]], np.uint32),
        "IN_UINT64": np.array([[0, 2**64 - 1, 7]], np.uint64),
        "IN_INT8": np.array([[-128, 127, 0]], np.int8),
        "IN_INT16": np.array([[-32768, 32767, 0]], np.int16),
        "IN_INT32": np.array([[-(2**31), 2**31 - 1, 0]], np.int32),
        "IN_INT64": np.array([[-(2**63), 2**63 - 1, 0]], np.int64),
        "IN_FP16": np.array([[0.5, -65504, np.inf]], np.float16),
        "IN_FP32": np.array([[1e-38, -3.5, np.nan]], np.float32),
        "IN_FP64": np.array([[1e-300, 2.5, -0.0]], np.float64),
        "IN_BYTES": np.array([["héllo wörld ✓".encode(), b"", b"\x00\xff\x80binary\x00"]], dtype=object),
    }
    outputs = client.infer("echo_all", inputs)
    for name, value in inputs.items():
        got = outputs[name.replace("IN_", "OUT_")]
        assert got.dtype == value.dtype, name
        if value.dtype == object:
            assert got.tolist() == value.tolist()
        else:
            np.testing.assert_array_equal(got, value)


def test_mixed_batch_sizes_grouped_by_dynamic_batching(server: TritonServer) -> None:
    sizes = [1, 3, 1, 2, 1, 4]

    def send(index: int) -> dict[str, np.ndarray]:
        view = server.client("grpc" if index % 2 else "http")
        return view.infer("scale", {"A": np.full((sizes[index], 3), index, np.float32)})

    with ThreadPoolExecutor(len(sizes)) as pool:
        results = list(pool.map(send, range(len(sizes))))
    for index, result in enumerate(results):
        np.testing.assert_array_equal(result["SCALED"], np.full((sizes[index], 3), 2 * index, np.float32))
    grouped = [int(r["GROUP_ROWS"][0, 0]) for r in results]
    assert max(grouped) > max(sizes), f"no request shared a predict call: {grouped}"


def test_optional_inputs(client) -> None:  # type: ignore[no-untyped-def]
    x = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(client.infer("optionals", {"X": x})["RESULT"], [[10.0, 20.0]])
    y = np.array([[2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(client.infer("optionals", {"X": x, "Y": y})["RESULT"], [[2.0, 6.0]])
    out = client.infer("optionals", {"X": x, "Z": np.ones((1, 2), np.float32)})
    np.testing.assert_array_equal(out["RESULT"], [[11.0, 21.0]])
    assert out["HAD_Z"].tolist() == [[True]]


def test_validation_and_exceptions_isolated_in_one_batch(server: TritonServer) -> None:
    values = [4.0, -1.0, 9.0, float("nan"), 16.0, -2.0]

    def send(value: float) -> object:
        try:
            return server.client("grpc").infer("flaky", {"X": np.array([[value]], np.float32)})
        except InferError as error:
            return error

    with ThreadPoolExecutor(len(values)) as pool:
        results = list(pool.map(send, values))
    for value, result in zip(values, results, strict=True):
        if value >= 0:
            assert not isinstance(result, InferError), result
            assert result["Y"][0, 0] == np.sqrt(value)  # type: ignore[index]
        elif np.isnan(value):
            assert isinstance(result, InferError) and result.code == "INVALID_ARG"
            assert "input 'X': expected finite numbers, got NaN" in result.message
        else:
            assert isinstance(result, InferError) and result.code == "INTERNAL"
            assert f"RuntimeError: cannot take the square root of {value}" in result.message
    assert server.is_model_ready("flaky")


def test_server_rejects_wrong_dtype_and_shape(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InferError) as wrong_dtype:
        client.infer("scale", {"A": np.ones((1, 3), np.float64)})
    assert wrong_dtype.value.code == "INVALID_ARG"
    with pytest.raises(InferError) as wrong_shape:
        client.infer("scale", {"A": np.ones((1, 4), np.float32)})
    assert wrong_shape.value.code == "INVALID_ARG" and "A" in wrong_shape.value.message
    with pytest.raises(InferError) as unknown:
        client.infer("scale", {"A": np.ones((1, 3), np.float32), "B": np.ones((1, 3), np.float32)})
    assert unknown.value.code == "INVALID_ARG"


def test_max_batch_size_zero(client) -> None:  # type: ignore[no-untyped-def]
    out = client.infer("no_batch", {"TEXT": np.array([b"a", "é".encode(), b"c"], dtype=object)})
    assert out["COUNT"].tolist() == [3]
    assert out["JOINED"].tolist() == ["a|é|c".encode()]


def test_several_instances_serve_concurrently(server: TritonServer) -> None:
    def send(_: int) -> int:
        return int(server.client("grpc").infer("who_am_i", {"X": np.ones((1, 1), np.float32)})["PID"][0, 0])

    with ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(send, range(16)))
    assert len(pids) == 2, pids


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        (b"name", "returned unknown output 'WRONG'"),
        (b"dtype", "output 'GOOD' of model 'bad_outputs': expected data type FP32, got FP64"),
        (b"shape", "output 'GOOD' of model 'bad_outputs': expected shape [1, 2]"),
    ],
)
def test_bad_outputs_reported_as_internal(client, mode: bytes, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InferError) as error:
        client.infer("bad_outputs", {"MODE": np.array([[mode]], dtype=object)})
    assert error.value.code == "INTERNAL" and fragment in error.value.message
    assert client.infer("bad_outputs", {"MODE": np.array([[b"ok"]], dtype=object)})["GOOD"].tolist() == [[1.0, 1.0]]


def test_decoupled_stream(server: TritonServer) -> None:
    pieces = list(server.stream("countdown", {"N": np.array([[3]], np.int64)}))
    assert [p["PIECE"].tolist() for p in pieces] == [[[b"piece 0"]], [[b"piece 1"]], [[b"piece 2"]]]


def test_ragged_requests_padded_together(server: TritonServer) -> None:
    lengths = [1, 4, 2]

    def send(n: int) -> dict[str, np.ndarray]:
        return server.client("grpc").infer("ragged", {"IDS": np.arange(1, n + 1, dtype=np.int64)[None]})

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(send, lengths))
    for n, result in zip(lengths, results, strict=True):
        assert result["TOTAL"].tolist() == [[n * (n + 1) // 2]]
    padded = [n for n, r in zip(lengths, results, strict=True) if int(r["LENGTHS"][0, 0]) > n]
    assert padded, "requests of different lengths never shared a predict call (allow_ragged_batch missing?)"


def test_request_ids_and_parameters_follow_their_rows_through_a_batch(server: TritonServer) -> None:
    sizes = [1, 2, 1, 3, 1]

    def send(index: int) -> dict[str, np.ndarray]:
        view = server.client("grpc" if index % 2 else "http")
        return view.infer(
            "request_info",
            {"X": np.zeros((sizes[index], 1), np.float32)},
            request_id=f"id-{index}",
            parameters={"tag": f"tag-{index}"},
        )

    with ThreadPoolExecutor(len(sizes)) as pool:
        results = list(pool.map(send, range(len(sizes))))
    for index, result in enumerate(results):
        assert result["REQUEST_ID"].ravel().tolist() == [f"id-{index}".encode()] * sizes[index]
        assert result["TAG"].ravel().tolist() == [f"tag-{index}".encode()] * sizes[index]
    shared = [int(r["ROWS"][0, 0]) for r in results]
    assert max(shared) > max(sizes), f"no request shared a predict call: {shared}"
