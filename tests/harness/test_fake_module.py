"""The fake ``triton_python_backend_utils`` module: names, helpers, ModelConfig, Logger and metrics."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pbkit.testing.fake import MODULE_NAME, InferenceRequest, Tensor, TritonModelException, install, pb_utils
from pbkit.testing.local import LocalTriton

STUB_BOUND = {
    "TritonError",
    "TritonModelException",
    "Tensor",
    "InferenceRequest",
    "InferenceResponse",
    "Logger",
    "PreferredMemory",
    "TRITONSERVER_MEMORY_GPU",
    "TRITONSERVER_MEMORY_CPU",
    "MetricFamily",
    "load_model",
    "unload_model",
    "is_model_ready",
    "get_model_dir",
}


def test_install_makes_the_module_importable_under_its_name() -> None:
    module = install()
    assert sys.modules[MODULE_NAME] is module
    assert importlib.import_module(MODULE_NAME) is module
    assert STUB_BOUND <= set(dir(module))
    assert {"json", "np", "struct", "ModelConfig", "TRITON_STRING_TO_NUMPY"} <= set(dir(module))


def test_stub_bound_names_are_missing_while_a_model_is_imported() -> None:
    module = install()
    with pb_utils.hidden_while_importing():
        assert not STUB_BOUND & set(dir(module))
        with pytest.raises(AttributeError, match="has no attribute 'Tensor'"):
            _ = module.Tensor
        assert module.get_input_tensor_by_name is pb_utils.get_input_tensor_by_name
    assert module.Tensor is Tensor


def test_helpers() -> None:
    request = InferenceRequest(model_name="m", requested_output_names=[], inputs=[Tensor("A", np.zeros(1))])
    assert pb_utils.get_input_tensor_by_name(request, "A").name() == "A"
    assert pb_utils.get_input_tensor_by_name(request, "B") is None
    config = {
        "input": [{"name": "A"}],
        "output": [{"name": "O"}],
        "model_transaction_policy": {"decoupled": True},
    }
    assert pb_utils.get_input_config_by_name(config, "A") == {"name": "A"}
    assert pb_utils.get_output_config_by_name(config, "X") is None
    assert pb_utils.get_input_config_by_name({}, "A") is None
    assert pb_utils.using_decoupled_model_transaction_policy(config) is True
    assert pb_utils.using_decoupled_model_transaction_policy({}) is False


def test_type_maps() -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_BOOL") is bool
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    with pytest.raises(KeyError):
        pb_utils.triton_string_to_numpy("TYPE_BF16")
    assert [pb_utils.triton_to_numpy_type(code) for code in (1, 11, 13, 14)] == [
        np.bool_,
        np.float32,
        np.object_,
        None,
    ]
    assert pb_utils.numpy_to_triton_type(np.float32) == 11
    assert pb_utils.numpy_to_triton_type(np.dtype("int64")) == 9
    assert pb_utils.numpy_to_triton_type(np.bytes_) == 13
    assert pb_utils.numpy_to_triton_type(np.str_) is None
    assert (
        pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START,
        pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END,
        pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
        pb_utils.TRITONSERVER_REQUEST_RELEASE_ALL,
        pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE,
    ) == (1, 2, 1, 1, 2)


def model_config(**extra: object) -> pb_utils.ModelConfig:
    return pb_utils.ModelConfig(
        json.dumps({"name": "m", "max_batch_size": 4, "input": [], "output": [], **extra})
    )


def test_model_config_inputs_and_outputs() -> None:
    config = model_config()
    config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [2]})
    config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [2], "optional": True})
    config.add_output({"name": "O", "data_type": "TYPE_INT64", "dims": [-1]})
    assert config.as_dict()["input"] == [
        {"name": "A", "data_type": "TYPE_FP32", "dims": [2], "optional": True}
    ]
    assert config.as_dict()["output"] == [{"name": "O", "data_type": "TYPE_INT64", "dims": [-1]}]
    with pytest.raises(
        ValueError, match="configuration expects datatype TYPE_FP32 for input 'A', model provides"
    ):
        config.add_input({"name": "A", "data_type": "TYPE_INT8", "dims": [2]})
    with pytest.raises(
        ValueError, match=r"the model expects dims \[3\] but the model configuration specifies dims"
    ):
        config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [3]})
    with pytest.raises(ValueError, match="the model expects optional False"):
        config.add_input({"name": "A", "data_type": "TYPE_FP32", "dims": [2], "optional": False})
    with pytest.raises(ValueError, match="contains property other than 'name', 'data_type' and 'dims'"):
        config.add_output({"name": "X", "data_type": "TYPE_FP32", "dims": [1], "optional": True})
    with pytest.raises(ValueError, match="is missing 'data_type' property"):
        config.add_input({"name": "B", "dims": [1]})
    with pytest.raises(
        ValueError, match="input in auto-complete-config function for model 'm' is missing 'name'"
    ):
        config.add_input({"data_type": "TYPE_FP32", "dims": [1]})


def test_model_config_batching_and_policy() -> None:
    config = model_config()
    with pytest.raises(ValueError, match="configuration specified max_batch_size 4"):
        config.set_max_batch_size(2)
    config.set_max_batch_size(8)
    config.set_dynamic_batching()
    config.set_dynamic_batching()
    assert config.as_dict()["max_batch_size"] == 8 and config.as_dict()["dynamic_batching"] == {}
    with pytest.raises(ValueError, match="tries to set scheduling_choice as 'dynamic_batching'"):
        model_config(sequence_batching={}).set_dynamic_batching()
    config.set_model_transaction_policy({"decoupled": True})
    config.set_model_transaction_policy({"decoupled": True})
    with pytest.raises(ValueError, match="which is already set to 'True'"):
        config.set_model_transaction_policy({"decoupled": False})
    with pytest.raises(ValueError, match="contains property other than 'decoupled'"):
        config.set_model_transaction_policy({"streaming": True})


def test_stub_bound_functions_need_a_model() -> None:
    with pytest.raises(TritonModelException, match="get_model_dir"):
        pb_utils._get_model_dir()


def test_logger_and_metrics_outside_a_model_need_running_as(tmp_path: Path) -> None:
    with LocalTriton(tmp_path) as local:
        pb_utils._PATCHED["Logger"].log_info("to Python logging")
        with pytest.raises(TritonModelException, match="needs a running model"):
            pb_utils._PATCHED["MetricFamily"]("x", "", pb_utils._PATCHED["MetricFamily"].GAUGE)
        assert local.logs == []


def test_logger_and_metrics_through_a_local_server(tmp_path: Path) -> None:
    with LocalTriton(tmp_path) as local, local.running_as("m") as instance:
        assert instance.instance_name == "m_0" and pb_utils._get_model_dir() == str(tmp_path / "m" / "1")
        pb_utils._PATCHED["Logger"].log_warn("careful")
        assert [(r.instance, r.level, r.message) for r in local.logs] == [("m_0", "WARNING", "careful")]
        with pytest.raises(TypeError):
            pb_utils._PATCHED["Logger"].log("x", 3)
        family_class = pb_utils._PATCHED["MetricFamily"]
        counter_family = family_class("requests_total", "Requests", family_class.COUNTER)
        counter = counter_family.Metric(labels={"model": "m"})
        counter.increment(2)
        counter.increment(0.5)
        assert counter.value() == 2.5 == local.metrics.value("requests_total", {"model": "m"})
        same = counter_family.Metric(labels={"model": "m"})
        assert same.value() == 2.5
        with pytest.raises(TritonModelException, match="can only be incremented monotonically"):
            counter.increment(-1)
        with pytest.raises(TritonModelException, match="COUNTER does not support Set"):
            counter.set(1)
        gauge = family_class("queue_depth", "Depth", family_class.GAUGE).Metric()
        with pytest.raises(TritonModelException, match="'MetricFamily' has been deleted"):
            gauge.set(3)
        histogram_family = family_class("latency", "Latency", family_class.HISTOGRAM)
        histogram = histogram_family.Metric(buckets=[0.1, 1.0])
        for value in (0.05, 0.5, 3.0):
            histogram.observe(value)
        assert local.metrics.histogram("latency") == {
            "count": 3,
            "sum": 3.55,
            "buckets": {0.1: 1, 1.0: 2, float("inf"): 3},
        }
        with pytest.raises(TritonModelException, match="HISTOGRAM does not support Value"):
            histogram.value()
        with pytest.raises(TritonModelException, match="Missing required buckets"):
            histogram_family.Metric()
        with pytest.raises(TritonModelException, match="Bucket Boundaries must be strictly sorted"):
            histogram_family.Metric(buckets=[1.0, 1.0])
        with pytest.raises(TritonModelException, match="Family name already exists with different type"):
            family_class("latency", "Latency", family_class.GAUGE)
        with pytest.raises(TritonModelException, match="Invalid metric name"):
            family_class("bad name", "", family_class.GAUGE)
        text = local.metrics.text()
        assert 'requests_total{model="m"} 2.5' in text and 'latency_bucket{le="+Inf"} 3' in text
