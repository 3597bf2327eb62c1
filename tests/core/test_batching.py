"""The batching loop on plain numpy requests: gather, predict once, scatter, isolate."""

from __future__ import annotations

import numpy as np
import pytest

import pbkit
from pbkit.runtime.batching import BatchingLoop, Request, RequestFailed


def loop_for(model_class: type) -> tuple[BatchingLoop, object]:
    instance = model_class()
    return BatchingLoop(
        pbkit.spec_of(model_class), instance.predict, getattr(instance, "validate", None)
    ), instance


def test_mixed_batch_sizes_share_one_call(core_models) -> None:
    loop, _ = loop_for(core_models.Scale)
    sizes = [1, 3, 1, 2]
    requests = [Request({"A": np.full((n, 3), i, np.float32)}) for i, n in enumerate(sizes)]
    results = loop.run(requests)
    for i, (n, result) in enumerate(zip(sizes, results, strict=True)):
        assert not isinstance(result, RequestFailed)
        np.testing.assert_array_equal(result["SCALED"], np.full((n, 3), 2 * i, np.float32))
        assert (result["GROUP_ROWS"] == sum(sizes)).all()


def test_invalid_request_fails_alone(core_models) -> None:
    loop, _ = loop_for(core_models.Scale)
    good = Request({"A": np.ones((2, 3), np.float32)})
    wrong_dtype = Request({"A": np.ones((1, 3), np.float64)})
    wrong_shape = Request({"A": np.ones((1, 4), np.float32)})
    unknown = Request({"A": np.ones((1, 3), np.float32), "B": np.ones((1, 3), np.float32)})
    missing = Request({})
    results = loop.run([good, wrong_dtype, wrong_shape, unknown, missing])
    assert results[0]["SCALED"].shape == (2, 3)
    messages = {}
    for index, result in enumerate(results[1:], start=1):
        assert isinstance(result, RequestFailed) and result.code == "INVALID_ARG"
        messages[index] = result.message
    assert "'A'" in messages[1] and "FP32" in messages[1] and "FP64" in messages[1]
    assert "'A'" in messages[2] and "[-1, 3]" in messages[2] and "[1, 4]" in messages[2]
    assert "'B'" in messages[3]
    assert "['A']" in messages[4]


def test_exception_isolated_to_failing_request(core_models) -> None:
    loop, _ = loop_for(core_models.Flaky)
    requests = [Request({"X": np.array([[v]], np.float32)}) for v in (4.0, -1.0, 9.0, float("nan"))]
    results = loop.run(requests)
    assert results[0]["Y"][0, 0] == 2.0
    assert results[2]["Y"][0, 0] == 3.0
    assert isinstance(results[1], RequestFailed) and results[1].code == "INTERNAL"
    assert results[1].message == "RuntimeError: cannot take the square root of -1.0"
    assert isinstance(results[3], RequestFailed) and results[3].code == "INVALID_ARG"
    assert "NaN" in results[3].message


def test_optional_inputs_default_and_grouping(core_models) -> None:
    loop, _ = loop_for(core_models.Optionals)
    x = np.array([[1.0, 2.0]], np.float32)
    results = loop.run(
        [
            Request({"X": x}),
            Request({"X": x, "Y": np.array([[2.0, 3.0]], np.float32)}),
            Request({"X": x, "Z": np.array([[1.0, 1.0]], np.float32)}),
        ]
    )
    np.testing.assert_array_equal(results[0]["RESULT"], [[10.0, 20.0]])
    np.testing.assert_array_equal(results[1]["RESULT"], [[2.0, 6.0]])
    np.testing.assert_array_equal(results[2]["RESULT"], [[11.0, 21.0]])
    assert results[0]["HAD_Z"][0, 0] == np.False_ and results[2]["HAD_Z"][0, 0] == np.True_


def test_max_batch_size_zero_adds_and_removes_batch_axis(core_models) -> None:
    loop, _ = loop_for(core_models.NoBatch)
    results = loop.run([Request({"TEXT": np.array([b"a", b"b", b"c"], dtype=object)})])
    assert results[0]["COUNT"].tolist() == [3]
    assert results[0]["JOINED"].tolist() == [b"a|b|c"]


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        (b"name", "unknown output 'WRONG'"),
        (b"dtype", "output 'GOOD' of model 'bad_outputs': expected data type FP32, got FP64"),
        (b"shape", "output 'GOOD' of model 'bad_outputs': expected shape [1, 2]"),
        (b"rows", "expected shape [1, 2] (batch of 1), got [2, 2]"),
    ],
)
def test_bad_outputs_are_internal_errors_naming_the_output(core_models, mode: bytes, fragment: str) -> None:
    loop, _ = loop_for(core_models.BadOutputs)
    (result,) = loop.run([Request({"MODE": np.array([[mode]], dtype=object)})])
    assert isinstance(result, RequestFailed) and result.code == "INTERNAL"
    assert fragment in result.message


def test_ragged_inputs_padded_into_one_call(core_models) -> None:
    loop, _ = loop_for(core_models.Ragged)
    results = loop.run(
        [Request({"IDS": np.array([[1, 2, 3]], np.int64)}), Request({"IDS": np.array([[5]], np.int64)})]
    )
    assert [r["LENGTHS"][0, 0] for r in results] == [3, 3]
    assert [r["TOTAL"][0, 0] for r in results] == [6, 5]


def test_requested_outputs_pruned(core_models) -> None:
    loop, _ = loop_for(core_models.Scale)
    (result,) = loop.run([Request({"A": np.ones((1, 3), np.float32)}, requested_outputs=["GROUP_ROWS"])])
    assert list(result) == ["GROUP_ROWS"]


def test_bytes_input_must_hold_bytes(core_models) -> None:
    loop, _ = loop_for(core_models.NoBatch)
    (result,) = loop.run([Request({"TEXT": np.array(["not bytes"], dtype=object)})])
    assert isinstance(result, RequestFailed) and result.code == "INVALID_ARG"
    assert "BYTES elements must be bytes, got str" in result.message


def test_batch_over_max_batch_size_rejected(core_models) -> None:
    loop, _ = loop_for(core_models.Scale)
    (result,) = loop.run([Request({"A": np.ones((17, 3), np.float32)})])
    assert isinstance(result, RequestFailed) and "exceeds max_batch_size 16" in result.message


def test_generator_streams_each_step(core_models) -> None:
    loop, _ = loop_for(core_models.Countdown)
    members = [Request({"N": np.array([[3]], np.int64)}), Request({"N": np.array([[3]], np.int64)})]
    for request in members:
        assert loop.check_request(request) is None
    steps = list(loop.stream_group(members))
    assert len(steps) == 3
    assert [step[1]["INDEX"][0, 0] for step in steps] == [0, 1, 2]


def test_batch_info_parameter() -> None:
    seen = {}

    @pbkit.model(max_batch_size=4, outputs=[pbkit.Output("Y", "FP32", [1])])
    class WithInfo:
        def predict(self, X: pbkit.FP32[1], info: pbkit.BatchInfo) -> dict[str, np.ndarray]:
            seen["sizes"] = info.batch_sizes
            seen["params"] = info.parameters
            return {"Y": X}

    assert [t.name for t in pbkit.spec_of(WithInfo).inputs] == ["X"]
    loop = BatchingLoop(pbkit.spec_of(WithInfo), WithInfo().predict)
    loop.run(
        [
            Request({"X": np.ones((2, 1), np.float32)}, parameters={"k": 1}),
            Request({"X": np.ones((1, 1), np.float32)}, parameters=lambda: {"k": 2}),
        ]
    )
    assert seen == {"sizes": [2, 1], "params": [{"k": 1}, {"k": 2}]}


def test_optional_with_default_batches_with_explicit_values(core_models) -> None:
    loop, _ = loop_for(core_models.Optionals)
    calls = []
    original = loop.predict

    def counting(**inputs: object) -> object:
        calls.append(len(inputs["X"]))  # type: ignore[arg-type]
        return original(**inputs)

    loop.predict = counting
    x = np.array([[1.0, 2.0]], np.float32)
    results = loop.run([Request({"X": x}), Request({"X": x, "Y": np.array([[2.0, 3.0]], np.float32)})])
    assert calls == [2]
    np.testing.assert_array_equal(results[0]["RESULT"], [[10.0, 20.0]])
    np.testing.assert_array_equal(results[1]["RESULT"], [[2.0, 6.0]])


def test_padded_input_is_ragged_in_config(core_models) -> None:
    from pbkit.config import model_config

    config = model_config(pbkit.spec_of(core_models.Ragged))
    assert config.input[0].allow_ragged_batch
    assert not model_config(pbkit.spec_of(core_models.Scale)).input[0].allow_ragged_batch
