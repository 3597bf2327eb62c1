"""Dynamic batching: which requests share an ``execute`` call."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pbkit.testing.client import InferError
from pbkit.testing.local import LocalTriton

from .repos import EXAMPLES, ModelWriter

BATCHING_CODE = """
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
                count = np.full((len(x), 1), len(requests), np.int32)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x), pb_utils.Tensor("N", count)]))
            return responses
"""


def batching_model(
    model: ModelWriter, name: str, batching: str, max_batch_size: int = 8, optional: bool = False
) -> None:
    extra_input = ', { name: "W" data_type: TYPE_FP32 dims: [ 1 ] optional: true }' if optional else ""
    model(
        name,
        f"""
        name: "{name}"
        backend: "python"
        max_batch_size: {max_batch_size}
        input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }}{extra_input} ]
        output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }}, {{ name: "N" data_type: TYPE_INT32 dims: [ 1 ] }} ]
        {batching}
        """,
        BATCHING_CODE,
    )


def rows(count: int, batch: int = 1) -> list[dict[str, np.ndarray]]:
    return [{"X": np.full((batch, 1), i, np.float32)} for i in range(count)]


def test_infer_many_fills_batches_up_to_max_batch_size(repo: Path, model: ModelWriter) -> None:
    batching_model(model, "dyn", "dynamic_batching { }")
    with LocalTriton(repo) as local:
        results = local.infer_many("dyn", rows(5))
        assert [r["Y"][0, 0] for r in results] == [0, 1, 2, 3, 4]
        assert [r["N"][0, 0] for r in results] == [5] * 5
        local.infer_many("dyn", rows(10))
        local.infer_many("dyn", rows(3, batch=3))
        assert local.batch_sizes("dyn") == [5, 8, 2, 2, 1]


def test_preferred_batch_sizes(repo: Path, model: ModelWriter) -> None:
    batching_model(model, "preferring", "dynamic_batching { preferred_batch_size: [ 2, 4 ] }")
    with LocalTriton(repo) as local:
        local.infer_many("preferring", rows(5))
        local.infer_many("preferring", rows(3))
        assert local.batch_sizes("preferring") == [4, 1, 2, 1]


def test_without_dynamic_batching_each_request_runs_alone(repo: Path, model: ModelWriter) -> None:
    batching_model(model, "plain", "")
    with LocalTriton(repo) as local:
        results = local.infer_many("plain", rows(3))
        assert [r["N"][0, 0] for r in results] == [1, 1, 1]
        assert local.batch_sizes("plain") == [1, 1, 1]


def test_requests_with_different_optional_inputs_are_not_batched(repo: Path, model: ModelWriter) -> None:
    batching_model(model, "optional", "dynamic_batching { }", optional=True)
    with_w = {"X": np.ones((1, 1), np.float32), "W": np.ones((1, 1), np.float32)}
    without_w = {"X": np.ones((1, 1), np.float32)}
    with LocalTriton(repo) as local:
        local.infer_many("optional", [with_w, with_w, without_w, with_w])
        assert local.batch_sizes("optional") == [2, 1, 1]


def test_concurrent_infer_calls_share_a_batch_within_the_queue_delay(repo: Path, model: ModelWriter) -> None:
    batching_model(
        model, "delayed", "dynamic_batching { max_queue_delay_microseconds: 500000 }", max_batch_size=4
    )
    with LocalTriton(repo) as local:
        barrier = threading.Barrier(4)
        counts: list[int] = []

        def call(i: int) -> None:
            barrier.wait()
            counts.append(int(local.infer("delayed", {"X": np.full((1, 1), i, np.float32)})["N"][0, 0]))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert counts == [4, 4, 4, 4]
        assert time.monotonic() - start < 0.5  # a full batch (the preferred size) does not wait
        assert local.batch_sizes("delayed") == [4]


def test_infer_many_reports_each_failure(repo: Path, model: ModelWriter) -> None:
    batching_model(model, "dyn", "dynamic_batching { }")
    bad = {"X": np.ones((1, 2), np.float32)}
    with LocalTriton(repo) as local:
        results = local.infer_many("dyn", [*rows(2), bad], return_exceptions=True)
        assert isinstance(results[2], InferError) and results[2].code == "INVALID_ARG"
        assert [r["N"][0, 0] for r in results[:2]] == [2, 2]
        with pytest.raises(InferError, match="unexpected shape for input 'X'"):
            local.infer_many("dyn", [*rows(2), bad])


def test_example_batching_model_counts_its_requests() -> None:
    inputs = {"INPUT0": np.ones((1, 4), np.float32), "INPUT1": np.ones((1, 4), np.float32)}
    with LocalTriton(EXAMPLES, models=["add_sub_batched"]) as local:
        results = local.infer_many("add_sub_batched", [inputs] * 3)
    assert [r["BATCH_REQUESTS"].tolist() for r in results] == [[[3]]] * 3


STEP_CODE = """
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
                if (x < 0).any():
                    responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"negative: {x.ravel()}")))
                    continue
                count = np.full((len(x), 1), len(requests), np.int32)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x + 1), pb_utils.Tensor("N", count)]))
            return responses
"""


def ensemble_of_two_batching_steps(model: ModelWriter) -> None:
    for name in ("first", "second"):
        model(
            name,
            f"""
            name: "{name}"
            backend: "python"
            max_batch_size: 8
            input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }} ]
            output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }}, {{ name: "N" data_type: TYPE_INT32 dims: [ 1 ] }} ]
            dynamic_batching {{ }}
            """,
            STEP_CODE,
        )
    model(
        "pipe",
        """
        name: "pipe"
        platform: "ensemble"
        max_batch_size: 8
        input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [
          { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] },
          { name: "N_FIRST" data_type: TYPE_INT32 dims: [ 1 ] },
          { name: "N_SECOND" data_type: TYPE_INT32 dims: [ 1 ] }
        ]
        ensemble_scheduling { step [
          { model_name: "first" model_version: -1 input_map { key: "X" value: "X" }
            output_map { key: "Y" value: "mid" } output_map { key: "N" value: "N_FIRST" } },
          { model_name: "second" model_version: -1 input_map { key: "X" value: "mid" }
            output_map { key: "Y" value: "Y" } output_map { key: "N" value: "N_SECOND" } }
        ] }
        """,
        None,
    )


def test_infer_many_on_an_ensemble_batches_each_step(repo: Path, model: ModelWriter) -> None:
    """Requests sent together through an ensemble reach each step's dynamic batcher together."""
    ensemble_of_two_batching_steps(model)
    with LocalTriton(repo) as local:
        results = local.infer_many("pipe", rows(5))
        assert [r["Y"][0, 0] for r in results] == [2, 3, 4, 5, 6]
        assert [r["N_FIRST"][0, 0] for r in results] == [5] * 5
        assert [r["N_SECOND"][0, 0] for r in results] == [5] * 5
        assert local.batch_sizes("first") == [5] and local.batch_sizes("second") == [5]


def test_a_failing_step_fails_only_its_request_in_a_batched_ensemble(repo: Path, model: ModelWriter) -> None:
    ensemble_of_two_batching_steps(model)
    with LocalTriton(repo) as local:
        alone = None
        try:
            local.infer("pipe", {"X": np.full((1, 1), -1, np.float32)})
        except InferError as exc:
            alone = exc
        assert alone is not None
        requests = [*rows(3), {"X": np.full((1, 1), -1, np.float32)}, {"X": np.ones((1, 2), np.float32)}]
        results = local.infer_many("pipe", requests, return_exceptions=True)
        assert [r["Y"][0, 0] for r in results[:3]] == [2, 3, 4]
        # the same error as when sent alone: the step's message, inside the ensemble's
        assert isinstance(results[3], InferError)
        assert (results[3].code, results[3].message) == (alone.code, alone.message)
        assert "in ensemble 'pipe'" in alone.message and "negative" in alone.message
        assert isinstance(results[4], InferError) and results[4].code == "INVALID_ARG"
        assert local.batch_sizes("first") == [1, 4] and local.batch_sizes("second") == [3]
