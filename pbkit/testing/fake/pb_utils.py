"""The fake ``triton_python_backend_utils`` module: installed under that name in ``sys.modules``.

Like the real one, the module itself defines the pure-Python helpers (type maps, BYTES
serialization, ``get_*_by_name``, ``ModelConfig``, constants). The classes the stub binds in C++
(``Tensor``, ``InferenceRequest``, ``TritonError``, ...) and ``get_model_dir`` are patched onto it by
the stub *after* it imports the model's ``model.py``; so, as in Triton, they are missing while a
model module is being imported (``from triton_python_backend_utils import Tensor`` at module level
fails) and present afterwards (``pb_utils.Tensor`` inside ``initialize``/``execute`` works).
"""

from __future__ import annotations

import json
import struct  # noqa: F401 - the real module exposes json, np and struct as attributes
import threading
from typing import Any

import numpy as np

from . import context
from . import messages as _messages
from .errors import TritonError as _TritonError
from .errors import TritonModelException as _TritonModelException
from .messages import (
    TRITONSERVER_REQUEST_RELEASE_ALL,
    TRITONSERVER_REQUEST_RELEASE_RESCHEDULE,
    TRITONSERVER_RESPONSE_COMPLETE_FINAL,
)
from .metrics import Logger as _Logger
from .metrics import MetricFamily as _MetricFamily
from .tensor import Tensor as _Tensor
from .tensor import deserialize_bytes_tensor, serialize_byte_tensor

TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2

_NUMPY_BY_CODE: tuple[tuple[int, Any], ...] = (
    (1, np.bool_),
    (2, np.uint8),
    (3, np.uint16),
    (4, np.uint32),
    (5, np.uint64),
    (6, np.int8),
    (7, np.int16),
    (8, np.int32),
    (9, np.int64),
    (10, np.float16),
    (11, np.float32),
    (12, np.float64),
    (13, np.object_),
)


def get_input_tensor_by_name(inference_request: Any, name: str) -> _Tensor | None:
    """The request's input tensor called ``name``, or None (an optional input not sent)."""
    for tensor in inference_request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(inference_response: Any, name: str) -> _Tensor | None:
    """The response's output tensor called ``name``, or None."""
    for tensor in inference_response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The ``input`` entry of a model-config dict called ``name``, or None."""
    for entry in model_config.get("input", []) if "input" in model_config else []:
        if entry["name"] == name:
            return entry
    return None


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The ``output`` entry of a model-config dict called ``name``, or None."""
    for entry in model_config.get("output", []) if "output" in model_config else []:
        if entry["name"] == name:
            return entry
    return None


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    """Whether the model config sets ``model_transaction_policy { decoupled: true }``."""
    if "model_transaction_policy" in model_config:
        return model_config["model_transaction_policy"]["decoupled"]
    return False


def triton_to_numpy_type(data_type: int) -> Any:
    """The numpy type for a ``TRITONSERVER_DataType`` value (1..13), else None (BF16 has none)."""
    for code, numpy_type in _NUMPY_BY_CODE:
        if data_type == code:
            return numpy_type
    return None


def numpy_to_triton_type(data_type: Any) -> int | None:
    """The ``TRITONSERVER_DataType`` value for a numpy type; ``object_`` and ``bytes_`` give 13."""
    for code, numpy_type in _NUMPY_BY_CODE[:-1]:
        if data_type == numpy_type:
            return code
    if data_type == np.object_ or data_type == np.bytes_:
        return 13
    return None


def triton_string_to_numpy(triton_type_string: str) -> Any:
    """``TRITON_STRING_TO_NUMPY[triton_type_string]`` (KeyError for unknown names, TYPE_BF16 included)."""
    return TRITON_STRING_TO_NUMPY[triton_type_string]


class ModelConfig:
    """The configuration ``auto_complete_config`` receives and returns; only inputs, outputs,
    ``max_batch_size``, dynamic batching and the transaction policy may be changed."""

    def __init__(self, model_config: str) -> None:
        self._model_config = json.loads(model_config)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as a dict."""
        return self._model_config

    def _name(self) -> str:
        return str(self._model_config["name"])

    def set_max_batch_size(self, max_batch_size: int) -> None:
        """Set ``max_batch_size``; ValueError if the configuration already has a larger one."""
        current = self._model_config["max_batch_size"]
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but in auto-complete-config function for "
                f"model '{self._name()}' specified max_batch_size {max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        """Use the dynamic batcher; ValueError if sequence batching or an ensemble is configured."""
        for scheduler in ("sequence_batching", "ensemble_scheduling"):
            if scheduler in self._model_config:
                raise ValueError(
                    f"Configuration specified scheduling_choice as '{scheduler}', but auto-complete-config "
                    f"function for model '{self._name()}' tries to set scheduling_choice as 'dynamic_batching'"
                )
        self._model_config.setdefault("dynamic_batching", {})

    def _check_properties(self, kind: str, tensor: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in tensor:
            if key not in allowed:
                listed = (
                    "'name', 'data_type', 'dims' and 'optional'"
                    if "optional" in allowed
                    else "'name', 'data_type' and 'dims'"
                )
                raise ValueError(
                    f"{kind} '{tensor['name']}' in auto-complete-config function for model '{self._name()}' "
                    f"contains property other than {listed}."
                )
        if "name" not in tensor:
            raise ValueError(
                f"{kind} in auto-complete-config function for model '{self._name()}' is missing 'name' property."
            )
        for key in ("data_type", "dims"):
            if key not in tensor:
                raise ValueError(
                    f"{kind} '{tensor['name']}' in auto-complete-config function for model '{self._name()}' "
                    f"is missing '{key}' property."
                )

    def _merge(self, kind: str, key: str, tensor: dict[str, Any], with_optional: bool) -> None:
        for current in self._model_config[key]:
            if tensor["name"] != current["name"]:
                continue
            if current["data_type"] != "TYPE_INVALID" and current["data_type"] != tensor["data_type"]:
                raise ValueError(
                    f"unable to load model '{self._name()}', configuration expects datatype "
                    f"{current['data_type']} for {kind} '{tensor['name']}', model provides {tensor['data_type']}"
                )
            if current["dims"] and current["dims"] != tensor["dims"]:
                raise ValueError(
                    f"model '{self._name()}', tensor '{tensor['name']}': the model expects dims "
                    f"{tensor['dims']} but the model configuration specifies dims {current['dims']}"
                )
            if (
                with_optional
                and "optional" in current
                and "optional" in tensor
                and current["optional"] != tensor["optional"]
            ):
                raise ValueError(
                    f"model '{self._name()}', tensor '{tensor['name']}': the model expects optional "
                    f"{tensor['optional']} but the model configuration specifies optional {current['optional']}"
                )
            current["data_type"] = tensor["data_type"]
            current["dims"] = tensor["dims"]
            if with_optional and "optional" in tensor:
                current["optional"] = tensor["optional"]
            return
        self._model_config[key].append(tensor)

    def add_input(self, input: dict[str, Any]) -> None:
        """Add (or complete) an input: keys ``name``, ``data_type``, ``dims`` and optionally ``optional``."""
        self._check_properties("input", input, ("name", "data_type", "dims", "optional"))
        self._merge("input", "input", input, with_optional=True)

    def add_output(self, output: dict[str, Any]) -> None:
        """Add (or complete) an output: keys ``name``, ``data_type`` and ``dims``."""
        self._check_properties("output", output, ("name", "data_type", "dims"))
        self._merge("output", "output", output, with_optional=False)

    def set_model_transaction_policy(self, transaction_policy_dict: dict[str, Any]) -> None:
        """Set ``model_transaction_policy`` (only ``decoupled``; it cannot change a value already set)."""
        for key in transaction_policy_dict:
            if key != "decoupled":
                raise ValueError(
                    "model transaction property in auto-complete-config function for model "
                    f"'{self._name()}' contains property other than 'decoupled'."
                )
        policy = self._model_config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            if "decoupled" in policy and policy["decoupled"] != transaction_policy_dict["decoupled"]:
                raise ValueError(
                    f"trying to change decoupled property in auto-complete-config for model '{self._name()}', "
                    f"which is already set to '{policy['decoupled']}'."
                )
            policy["decoupled"] = transaction_policy_dict["decoupled"]


# ---------------------------------------------------------------------------------- bound by the stub
def _load_model(model_name: str, config: str = "", files: dict[str, bytes] | None = None) -> None:
    """Load (or reload) ``model_name``; ``config`` is a JSON model config, ``files`` maps
    ``"file:<version>/<name>"`` to contents (they need ``config``)."""
    host = context.require_host("load_model")
    if files is not None and not isinstance(files, dict):
        raise _TritonModelException(
            f"failed to load model '{model_name}', files should be a dictionary of file paths and file contents"
        )
    host.bls_load_model(model_name, config, None if files is None else dict(files))


def _unload_model(model_name: str, unload_dependents: bool = False) -> None:
    """Unload ``model_name``."""
    host = context.require_host("unload_model")
    host.bls_unload_model(model_name, bool(unload_dependents))


def _is_model_ready(model_name: str, model_version: str = "") -> bool:
    """Whether ``model_name`` (optionally ``model_version``, a string) is ready."""
    host = context.require_host("is_model_ready")
    version = -1
    if model_version != "":
        try:
            version = int(model_version)
        except ValueError:
            version = -2
        if version < 0:
            instance = context.current_instance()
            name = instance.instance_name if instance is not None else "<unknown>"
            raise _TritonModelException(
                "Failed to check model readiness: Failed to process the request for model "
                f"'{name}', message: failed to get model version from specified version string "
                f"'{model_version}' (details: stol), version should be an integral value > 0"
            )
    return host.bls_is_model_ready(model_name, version)


def _get_model_dir() -> str:
    """The folder of the running model version (``<repository>/<model>/<version>``)."""
    instance = context.current_instance()
    if instance is None:
        raise _TritonModelException("get_model_dir() is only available to code run by a model.")
    return instance.version_dir


_PATCHED: dict[str, Any] = {
    "TritonError": _TritonError,
    "TritonModelException": _TritonModelException,
    "Tensor": _Tensor,
    "InferenceRequest": _messages.InferenceRequest,
    "InferenceResponse": _messages.InferenceResponse,
    "Logger": _Logger,
    "PreferredMemory": _messages.PreferredMemory,
    "TRITONSERVER_MEMORY_GPU": _messages.TRITONSERVER_MEMORY_GPU,
    "TRITONSERVER_MEMORY_CPU": _messages.TRITONSERVER_MEMORY_CPU,
    "MetricFamily": _MetricFamily,
    "load_model": _load_model,
    "unload_model": _unload_model,
    "is_model_ready": _is_model_ready,
    "get_model_dir": _get_model_dir,
}
_PUBLIC = (
    "TRITON_STRING_TO_NUMPY",
    "serialize_byte_tensor",
    "deserialize_bytes_tensor",
    "get_input_tensor_by_name",
    "get_output_tensor_by_name",
    "get_input_config_by_name",
    "get_output_config_by_name",
    "using_decoupled_model_transaction_policy",
    "triton_to_numpy_type",
    "numpy_to_triton_type",
    "triton_string_to_numpy",
    "ModelConfig",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "json",
    "np",
    "struct",
)
__all__ = [
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITON_STRING_TO_NUMPY",
    "ModelConfig",
    "deserialize_bytes_tensor",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_output_config_by_name",
    "get_output_tensor_by_name",
    "numpy_to_triton_type",
    "serialize_byte_tensor",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
    "using_decoupled_model_transaction_policy",
]

_hidden = threading.local()


class hidden_while_importing:
    """Hide the stub-bound names in this thread, as while Triton imports a model's module."""

    def __enter__(self) -> None:
        _hidden.depth = getattr(_hidden, "depth", 0) + 1

    def __exit__(self, *exc_info: object) -> None:
        _hidden.depth -= 1


def __getattr__(name: str) -> Any:
    value = _PATCHED.get(name)
    if value is None or getattr(_hidden, "depth", 0):
        raise AttributeError(f"module 'triton_python_backend_utils' has no attribute '{name}'")
    return value


def __dir__() -> list[str]:
    names = list(_PUBLIC)
    if not getattr(_hidden, "depth", 0):
        names += list(_PATCHED)
    return sorted(names)
