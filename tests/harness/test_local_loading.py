"""LocalTriton loading a repository: configs, versions, auto-complete, instances, args, stubs, model control."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pbkit.testing.client import InferError, TritonClient
from pbkit.testing.local import LocalTriton

from .repos import ECHO_CODE, EXAMPLES, ModelWriter, echo_config

ARGS_CODE = """
    import json

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            pb_utils.Logger.log_info(json.dumps(args))

        def execute(self, requests):
            return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", r.inputs()[0].as_numpy())]) for r in requests]

        def finalize(self):
            pb_utils.Logger.log_info("finalized " + pb_utils.get_model_dir())
"""


def logged_args(local: LocalTriton) -> list[dict[str, str]]:
    return [json.loads(r.message) for r in local.logs if r.message.startswith("{")]


def test_local_triton_is_a_triton_client() -> None:
    with LocalTriton(EXAMPLES, models=["add_sub"]) as local:
        assert isinstance(local, TritonClient)
        assert local.is_model_ready("add_sub") and not local.is_model_ready("bls_sync")


def test_initialize_args_and_instances(repo: Path, model: ModelWriter) -> None:
    extra = """
        instance_group [ { name: "cpu" count: 2 kind: KIND_CPU }, { count: 1 kind: KIND_GPU gpus: [ 3 ] } ]
    """
    model("grouped", echo_config("grouped", extra=extra), ARGS_CODE)
    with LocalTriton(repo) as local:
        args = logged_args(local)
    assert [
        (a["model_instance_name"], a["model_instance_kind"], a["model_instance_device_id"]) for a in args
    ] == [
        ("cpu_0", "CPU", "0"),
        ("cpu_1", "CPU", "0"),
        ("grouped_1_0", "GPU", "3"),
    ]
    first = args[0]
    assert list(first) == [
        "model_config",
        "model_instance_kind",
        "model_instance_name",
        "model_instance_device_id",
        "model_repository",
        "model_version",
        "model_name",
    ]
    assert all(isinstance(value, str) for value in first.values())
    assert first["model_repository"] == str(repo / "grouped") and first["model_version"] == "1"
    config = json.loads(first["model_config"])
    assert config["input"][0]["dims"] == [-1]
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert config["default_model_filename"] == "model.py" and config["backend"] == "python"
    finalized = [r.message for r in local.logs if r.message.startswith("finalized")]
    assert finalized == [f"finalized {repo / 'grouped' / '1'}"] * 3


@pytest.mark.parametrize(
    ("policy", "loaded", "default"),
    [
        ("", [3], 3),
        ("version_policy: { latest: { num_versions: 2 } }", [2, 3], 3),
        ("version_policy: { all { } }", [1, 2, 3], 3),
        ("version_policy: { specific: { versions: [ 1, 3 ] } }", [1, 3], 3),
    ],
)
def test_version_policy(repo: Path, model: ModelWriter, policy: str, loaded: list[int], default: int) -> None:
    for version in (1, 2, 3):
        model("versions", echo_config("versions", extra=policy), ARGS_CODE, version=version)
    with LocalTriton(repo) as local:
        assert [s.version for s in local.model_states()] == loaded
        assert all(local.is_model_ready("versions", v) for v in loaded)
        local.infer("versions", {"X": np.ones(1, np.float32)})
        with pytest.raises(InferError) as raised:
            local.infer("versions", {"X": np.ones(1, np.float32)}, version=9)
    assert raised.value.code == "NOT_FOUND"
    assert raised.value.message == "Request for unknown model: 'versions' version 9 is not found"
    assert [a["model_version"] for a in logged_args(local)] == [str(v) for v in loaded]


AUTO_COMPLETE_CODE = """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        @staticmethod
        def auto_complete_config(config):
            config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [-1]})
            config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [-1]})
            return config

        def execute(self, requests):
            return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", r.inputs()[0].as_numpy())]) for r in requests]
"""


def test_default_model_filename_and_missing_config(repo: Path, model: ModelWriter) -> None:
    model(
        "named",
        echo_config("named", extra='default_model_filename: "serve.py"'),
        None,
        files={"1/serve.py": ECHO_CODE},
    )
    model("no_config", None, AUTO_COMPLETE_CODE)  # type: ignore[arg-type]
    with LocalTriton(repo) as local:
        assert local.infer("named", {"X": np.ones(2, np.float32)})["Y"].tolist() == [1.0, 1.0]
        config = local.config("no_config")
        assert config["backend"] == "python" and config["name"] == "no_config"
        assert [i["name"] for i in config["input"]] == ["X"]
        assert local.infer("no_config", {"X": np.zeros(1, np.float32)})["Y"].tolist() == [0.0]


def test_auto_complete_must_return_the_config(repo: Path, model: ModelWriter) -> None:
    model(
        "bad_complete",
        'name: "bad_complete"\nbackend: "python"\n',
        """
        class TritonPythonModel:
            @staticmethod
            def auto_complete_config(config):
                return config.as_dict()

            def execute(self, requests):
                return []
        """,
    )
    with LocalTriton(repo) as local:
        (state,) = local.model_states()
        assert not state.ready
        assert (
            "auto_complete_config function in model 'bad_complete' must return a valid pb.ModelConfig"
            in state.reason
        )
        with pytest.raises(InferError, match="has no available versions"):
            local.infer("bad_complete", {})


def test_auto_complete_disabled(repo: Path, model: ModelWriter) -> None:
    model(
        "completed",
        'name: "completed"\nbackend: "python"\n',
        """
        class TritonPythonModel:
            @staticmethod
            def auto_complete_config(config):
                config.set_max_batch_size(4)
                return config

            def execute(self, requests):
                return []
        """,
    )
    with LocalTriton(repo) as on, LocalTriton(repo, auto_complete=False) as off:
        assert on.config("completed")["max_batch_size"] == 4
        assert off.config("completed")["max_batch_size"] == 0


def test_load_failures_are_reported_not_raised(repo: Path, model: ModelWriter) -> None:
    model("syntax", echo_config("syntax"), "class TritonPythonModel(:\n")
    model("no_class", echo_config("no_class"), "x = 1\n")
    model("onnx", 'name: "onnx"\nbackend: "onnxruntime"\n', None)
    model("good", echo_config("good"), ECHO_CODE)
    with LocalTriton(repo) as local:
        states = {s.name: s for s in local.model_states()}
    assert states["good"].ready
    assert "SyntaxError" in states["syntax"].reason
    assert "has no attribute 'TritonPythonModel'" in states["no_class"].reason
    assert "pass LocalTriton(stubs={'onnx': ...})" in states["onnx"].reason


def test_stub_with_the_repository_config(repo: Path, model: ModelWriter) -> None:
    model(
        "encoder_trt",
        """
        name: "encoder_trt"
        platform: "tensorrt_plan"
        max_batch_size: 4
        input [ { name: "TOKENS" data_type: TYPE_INT32 dims: [ -1 ] } ]
        output [ { name: "EMBEDDING" data_type: TYPE_FP32 dims: [ 2 ] } ]
        """,
        None,
    )
    calls = []

    def encoder(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(inputs["TOKENS"].shape)
        return {"EMBEDDING": np.full((len(inputs["TOKENS"]), 2), 0.5, np.float32), "EXTRA": np.zeros(1)}

    with LocalTriton(
        repo, stubs={"encoder_trt": encoder, "free": lambda inputs: {"OUT": inputs["IN"] * 2}}
    ) as local:
        out = local.infer("encoder_trt", {"TOKENS": np.ones((3, 5), np.int32)})
        assert list(out) == ["EMBEDDING"] and out["EMBEDDING"].shape == (3, 2)
        with pytest.raises(InferError, match="data-type is 'INT64', but model 'encoder_trt' expects 'INT32'"):
            local.infer("encoder_trt", {"TOKENS": np.ones((1, 5), np.int64)})
        assert local.infer("free", {"IN": np.arange(3)})["OUT"].tolist() == [0, 2, 4]
    assert calls == [(3, 5)]


def test_model_control(repo: Path, model: ModelWriter) -> None:
    model("echo", echo_config("echo"), ECHO_CODE)
    with LocalTriton(repo) as local:
        local.unload_model("echo")
        assert not local.is_model_ready("echo")
        with pytest.raises(InferError, match="Request for unknown model: 'echo' is not found"):
            local.infer("echo", {"X": np.ones(1, np.float32)})
        local.load_model("echo")
        assert local.infer("echo", {"X": np.ones(1, np.float32)})["Y"].tolist() == [1.0]
        config = json.dumps({"name": "echo", "backend": "python", "max_batch_size": 2,
                             "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
                             "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}]})  # fmt: skip
        local.load_model(
            "echo", config=config, files={"file:1/model.py": textwrap.dedent(ECHO_CODE).encode()}
        )
        assert local.config("echo")["max_batch_size"] == 2
        with pytest.raises(InferError, match="unexpected shape"):
            local.infer("echo", {"X": np.ones(1, np.float32)})
        with pytest.raises(InferError, match="failed to poll from model repository"):
            local.load_model("nowhere")
