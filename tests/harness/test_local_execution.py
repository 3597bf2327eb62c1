"""What LocalTriton does with requests and with what ``execute`` returns: errors, senders, streaming,
async models, rescheduling, BLS routing and stubs, ensembles, timeouts and logs."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from pbkit.testing.client import InferError
from pbkit.testing.local import LocalTriton
from pbkit.testing.server import InferTimeout

from .repos import EXAMPLES, ModelWriter, echo_config

V = np.array([1.0, 2.0, 3.0, 4.0], np.float32)


def test_core_messages_name_the_request_id_and_inputs() -> None:
    with LocalTriton(EXAMPLES, models=["add_sub"]) as local:
        with pytest.raises(InferError) as raised:
            local.infer("add_sub", {"INPUT0": V, "INPUT1": V, "A": V, "B": V})
        assert raised.value.message.startswith(
            "[request id: <id_unknown>] expected 2 inputs but got 4 inputs"
        )
        # As tritonserver 2.51 lists them (the differential scenario "two extra inputs" checks the same call).
        assert (
            "Got input(s) ['B','A','INPUT1','INPUT0'], but missing required input(s) ]"
            in raised.value.message
        )
        with pytest.raises(InferError, match="invalid model version 'latest'"):
            local.infer("add_sub", {"INPUT0": V, "INPUT1": V}, version="latest")
        with pytest.raises(InferError, match="numpy dtype complex64 has no Triton data type"):
            local.infer("add_sub", {"INPUT0": V.astype(np.complex64), "INPUT1": V})


def test_inputs_reach_the_model_in_the_cores_order(repo: Path, model: ModelWriter) -> None:
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    inputs = " ".join(f'{{ name: "{n}" data_type: TYPE_FP32 dims: [ 1 ] }}' for n in names)
    model(
        "ordered",
        f"""
        name: "ordered"
        backend: "python"
        input [ {inputs.replace("} {", "}, {")} ]
        output [ {{ name: "ORDER" data_type: TYPE_STRING dims: [ -1 ] }} ]
        """,
        """
        import numpy as np
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            def execute(self, requests):
                return [
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor("ORDER", np.array([t.name() for t in r.inputs()], dtype=object))]
                    )
                    for r in requests
                ]
        """,
    )
    with LocalTriton(repo) as local:
        order = local.infer("ordered", {n: np.ones(1, np.float32) for n in names})["ORDER"]
    assert sorted(order.tolist()) == sorted(n.encode() for n in names)
    # The order tritonserver 2.51 gives (confirmed by the differential suite's input_order scenarios).
    assert [n.decode() for n in order] == ["alpha", "delta", "beta", "gamma", "epsilon"]


def test_a_request_the_model_never_answers(repo: Path, model: ModelWriter) -> None:
    model(
        "silent",
        echo_config("silent"),
        """
        class TritonPythonModel:
            def execute(self, requests):
                return [None for _ in requests]
        """,
    )
    with LocalTriton(repo) as local, pytest.raises(InferTimeout) as raised:
        local.infer("silent", {"X": V})
    assert raised.value.code == "UNAVAILABLE" and "a real server never answers it" in raised.value.message


def test_non_decoupled_answer_from_a_thread(repo: Path, model: ModelWriter) -> None:
    model(
        "later",
        echo_config("later"),
        """
        import threading

        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            def execute(self, requests):
                for request in requests:
                    sender = request.get_response_sender()
                    value = request.inputs()[0].as_numpy() * 2
                    response = pb_utils.InferenceResponse([pb_utils.Tensor("Y", value)])
                    threading.Timer(
                        0.05, sender.send, args=(response, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    ).start()
                return None
        """,
    )
    with LocalTriton(repo) as local:
        assert local.infer("later", {"X": V})["Y"].tolist() == (V * 2).tolist()


def test_async_execute_and_reschedule(repo: Path, model: ModelWriter) -> None:
    model(
        "async_model",
        echo_config("async_model"),
        """
        import asyncio

        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            async def execute(self, requests):
                await asyncio.sleep(0)
                return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", r.inputs()[0].as_numpy() + 1)]) for r in requests]
        """,
    )
    model(
        "again",
        echo_config("again"),
        """
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            def initialize(self, args):
                self.passes = 0

            def execute(self, requests):
                self.passes += 1
                if self.passes == 1:
                    for request in requests:
                        request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)
                    return [None for _ in requests]
                return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", r.inputs()[0].as_numpy() * self.passes)]) for r in requests]
        """,
    )
    with LocalTriton(repo) as local:
        assert local.infer("async_model", {"X": V})["Y"].tolist() == (V + 1).tolist()
        assert local.infer("again", {"X": V})["Y"].tolist() == (V * 2).tolist()
        assert local.batch_sizes("again") == [1, 1]


DECOUPLED_FOREVER = """
    import threading
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            for request in requests:
                threading.Thread(target=self.run, args=(request,), daemon=True).start()
            return None

        def run(self, request):
            sender = request.get_response_sender()
            for step in range(200):
                if request.is_cancelled():
                    pb_utils.Logger.log_info(f"cancelled after {step} responses")
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    return
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("Y", np.array([step], np.float32))]))
                time.sleep(0.01)
"""


def test_stream_cancellation_and_timeout(repo: Path, model: ModelWriter) -> None:
    model(
        "forever",
        echo_config("forever", extra="model_transaction_policy { decoupled: true }"),
        DECOUPLED_FOREVER,
    )
    with LocalTriton(repo) as local:
        parts = local.stream("forever", {"X": V})
        assert [next(parts)["Y"].tolist() for _ in range(3)] == [[0.0], [1.0], [2.0]]
        parts.close()
        for _ in range(100):
            if local.logs:
                break
            threading.Event().wait(0.02)
        assert local.logs and local.logs[0].message.startswith("cancelled after")
        with pytest.raises(InferTimeout):
            list(local.stream("forever", {"X": V}, timeout=0.1))
        with pytest.raises(InferError) as raised:
            local.infer("forever", {"X": V})
        assert raised.value.code == "UNSUPPORTED"


def test_execute_failures_are_logged() -> None:
    with LocalTriton(EXAMPLES, models=["execute_raises"]) as local:
        with pytest.raises(InferError):
            local.infer("execute_raises", {"IN": V})
        (record,) = local.logs
        assert record.level == "ERROR" and record.instance == "execute_raises_0"
        assert record.message.startswith("Failed to process the request(s) for model 'execute_raises_0'")


BLS_CALLER = """
    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                call = pb_utils.InferenceRequest(
                    model_name="{target}", requested_output_names=["Y"], inputs=[pb_utils.Tensor("X", request.inputs()[0].as_numpy())]
                )
                response = call.exec()
                if response.has_error():
                    responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(response.error().message())))
                else:
                    responses.append(pb_utils.InferenceResponse([pb_utils.get_output_tensor_by_name(response, "Y")]))
            return responses
"""


class FakeEngine:
    """A stand-in model object with ``execute``, as a TensorRT engine's replacement."""

    def __init__(self) -> None:
        self.initialized_with: dict[str, str] = {}

    def initialize(self, args: dict[str, str]) -> None:
        self.initialized_with = args

    def execute(self, requests):  # type: ignore[no-untyped-def]
        from pbkit.testing.fake import InferenceResponse, Tensor

        return [InferenceResponse([Tensor("Y", r.inputs()[0].as_numpy() * 10)]) for r in requests]


def test_bls_to_stubs_and_to_itself(repo: Path, model: ModelWriter) -> None:
    model("to_function", echo_config("to_function"), BLS_CALLER.format(target="function_stub"))
    model("to_object", echo_config("to_object"), BLS_CALLER.format(target="object_stub"))
    model("to_failing", echo_config("to_failing"), BLS_CALLER.format(target="failing_stub"))
    model("to_itself", echo_config("to_itself"), BLS_CALLER.format(target="to_itself"))
    model("to_nothing", echo_config("to_nothing"), BLS_CALLER.format(target="nothing"))
    engine = FakeEngine()

    def failing(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("engine fault")

    stubs = {
        "function_stub": lambda inputs: {"Y": inputs["X"] + 1},
        "object_stub": engine,
        "failing_stub": failing,
    }
    with LocalTriton(repo, stubs=stubs) as local:
        assert local.infer("to_function", {"X": V})["Y"].tolist() == (V + 1).tolist()
        assert local.infer("to_object", {"X": V})["Y"].tolist() == (V * 10).tolist()
        assert engine.initialized_with["model_name"] == "object_stub"
        with pytest.raises(InferError, match="RuntimeError: engine fault"):
            local.infer("to_failing", {"X": V})
        with pytest.raises(InferError, match="called itself through BLS while its only instance is busy"):
            local.infer("to_itself", {"X": V})
        with pytest.raises(InferError) as raised:
            local.infer("to_nothing", {"X": V})
        assert raised.value.message == (
            "Model nothing - Error when running inference: Failed for execute the inference request. "
            "Model 'nothing' is not ready."
        )


def test_ensemble_steps_that_no_requested_output_needs_are_pruned() -> None:
    inputs = {"INPUT0": V, "INPUT1": V}
    with LocalTriton(EXAMPLES, models=["add_sub", "scale", "ensemble_add_scale"]) as local:
        out = local.infer("ensemble_add_scale", inputs)
        assert list(out) == ["DIFF", "SCALED_SUM"]
        assert out["SCALED_SUM"].tolist() == (V * 2 * 2.5).tolist()
        local.infer("ensemble_add_scale", inputs, outputs=["DIFF"])
        assert local.batch_sizes("scale") == [1] and local.batch_sizes("add_sub") == [1, 1]


def test_reshape_is_applied_before_the_model(repo: Path, model: ModelWriter) -> None:
    model(
        "reshaping",
        """
        name: "reshaping"
        backend: "python"
        max_batch_size: 4
        input [ { name: "X" data_type: TYPE_FP32 dims: [ 6 ] reshape: { shape: [ 2, 3 ] } } ]
        output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]
        """,
        """
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            def execute(self, requests):
                return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", r.inputs()[0].as_numpy())]) for r in requests]
        """,
    )
    with LocalTriton(repo) as local:
        assert local.infer("reshaping", {"X": np.zeros((2, 6), np.float32)})["Y"].shape == (2, 2, 3)


def test_an_ensemble_of_an_ensemble(repo: Path, model: ModelWriter) -> None:
    for name in ("add_sub", "scale", "ensemble_add_scale"):
        shutil.copytree(EXAMPLES / name, repo / name)
    model(
        "aa_outer",
        """
        name: "aa_outer"
        platform: "ensemble"
        input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 4 ] } ]
        output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
        ensemble_scheduling {
          step [
            {
              model_name: "ensemble_add_scale"
              model_version: -1
              input_map { key: "INPUT0" value: "A" }
              input_map { key: "INPUT1" value: "B" }
              output_map { key: "SCALED_SUM" value: "OUT" }
            }
          ]
        }
        """,
        None,
    )
    with LocalTriton(repo) as local:
        assert local.infer("aa_outer", {"A": V, "B": V})["OUT"].tolist() == (V * 2 * 2.5).tolist()
        with pytest.raises(InferError, match="'nothing' is not found"):
            local.config("nothing")
