"""The batching loop's remembered checks (shapes that fit, output dtypes) answer as the full checks do."""

from __future__ import annotations

from typing import Any

import numpy as np

import pbkit
from pbkit.runtime.batching import BatchingLoop, Request, RequestFailed


@pbkit.model(
    name="fast_path_echo",
    inputs=[pbkit.Input("X", "FP32", [-1, 4])],
    outputs=[pbkit.Output("X", "FP32", [3, 4]), pbkit.Output("N", "INT64", [1])],
    max_batch_size=8,
)
class EchoRows:
    """Returns its input as X (declared [3, 4], so other row counts are wrong) and the batch size."""

    def __init__(self) -> None:
        self.dtype: Any = np.float32

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {"X": X.astype(self.dtype), "N": np.full((len(X), 1), len(X), np.int64)}


def make_loop() -> tuple[BatchingLoop, EchoRows]:
    model = EchoRows()
    return BatchingLoop(pbkit.spec_of(EchoRows), model.predict), model


def request(rows: int, width: int = 4, length: int = 3, dtype: Any = np.float32, **kwargs: Any) -> Request:
    return Request(
        {"X": np.arange(rows * length * width, dtype=dtype).reshape(rows, length, width)}, **kwargs
    )


def test_a_shape_that_fitted_once_does_not_let_a_wrong_one_through() -> None:
    loop, _ = make_loop()
    for _ in range(3):
        good, wrong = loop.run([request(1), request(1, width=5)])
        assert not isinstance(good, RequestFailed)
        assert isinstance(wrong, RequestFailed) and wrong.code == "INVALID_ARG"
        assert (
            wrong.message == "input 'X' of model 'fast_path_echo': expected shape [-1, -1, 4], got [1, 3, 5]"
        )


def test_input_and_output_shapes_are_remembered_apart() -> None:
    loop, _ = make_loop()
    # Length 2 fits the input's [-1, 4] but not the output's [3, 4], also after it was seen as an input.
    first, second = loop.run([request(1, length=2)]), loop.run([request(1, length=2)])
    for results in (first, second):
        (failure,) = results
        assert isinstance(failure, RequestFailed) and failure.code == "INTERNAL"
        assert failure.message == (
            "output 'X' of model 'fast_path_echo': expected shape [1, 3, 4] (batch of 1), got [1, 2, 4]"
        )
    (ok,) = loop.run([request(2, length=3)])
    assert not isinstance(ok, RequestFailed) and ok["X"].shape == (2, 3, 4)


def test_a_wrong_output_dtype_is_reported_every_time() -> None:
    loop, model = make_loop()
    model.dtype = np.float64
    for _ in range(2):
        (failure,) = loop.run([request(1)])
        assert isinstance(failure, RequestFailed) and failure.code == "INTERNAL"
        assert failure.message.startswith(
            "output 'X' of model 'fast_path_echo': expected data type FP32, got"
        )
    model.dtype = np.float32
    (ok,) = loop.run([request(1)])
    assert not isinstance(ok, RequestFailed) and ok["X"].dtype == np.float32


def test_one_request_gets_the_whole_outputs_or_only_those_it_asked_for() -> None:
    loop, _ = make_loop()
    (everything,) = loop.run([request(2)])
    assert set(everything) == {"X", "N"}
    np.testing.assert_array_equal(everything["N"], [[2], [2]])
    (only_n,) = loop.run([request(2, requested_outputs=["N"])])
    assert set(only_n) == {"N"}


def test_several_requests_are_still_split_back() -> None:
    loop, _ = make_loop()
    results = loop.run([request(1), request(2), request(3)])
    assert [r["X"].shape[0] for r in results] == [1, 2, 3]  # type: ignore[index]
    assert all((r["N"] == 6).all() for r in results)  # type: ignore[index]
