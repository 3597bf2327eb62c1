"""The checks a request passes before any model code runs: client-side conversion, then Triton core's
``InferenceRequest::Normalize`` (requested outputs, input count, names, batch size, data types, shapes)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes
from .ordering import unordered_order
from .repository import ModelConfig

_BATCH_NOTE = (
    "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended "
    "to each input shape. If you want to specify the full shape including the batch dim in your input dims "
    "config, try setting max_batch_size to zero. See the model configuration docs for more info on "
    "max_batch_size."
)


class RequestError(Exception):
    """A request Triton refuses; ``code`` is an ``InferError`` code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model config."""

    name: str
    triton_type: int
    dims: tuple[int, ...]
    optional: bool = False
    reshape: tuple[int, ...] | None = None


@dataclass
class ModelIO:
    """What the core checks requests against."""

    name: str
    max_batch_size: int
    inputs: dict[str, TensorSpec] = field(default_factory=dict)
    outputs: dict[str, TensorSpec] = field(default_factory=dict)
    checked: bool = True

    @property
    def required_count(self) -> int:
        """How many inputs are not optional."""
        return sum(1 for spec in self.inputs.values() if not spec.optional)

    @property
    def has_optional(self) -> bool:
        """Whether any input is optional (then the batcher only batches requests with the same inputs)."""
        return any(spec.optional for spec in self.inputs.values())

    @classmethod
    def from_config(cls, config: ModelConfig) -> ModelIO:
        """The IO of a normalized config."""
        io = cls(name=config.name, max_batch_size=config.max_batch_size)
        for tensor in config.input:
            reshape = tuple(tensor.reshape.shape) if tensor.HasField("reshape") else None
            io.inputs.setdefault(
                tensor.name,
                TensorSpec(tensor.name, int(tensor.data_type), tuple(tensor.dims), tensor.optional, reshape),
            )
        for tensor in config.output:
            reshape = tuple(tensor.reshape.shape) if tensor.HasField("reshape") else None
            io.outputs.setdefault(
                tensor.name,
                TensorSpec(tensor.name, int(tensor.data_type), tuple(tensor.dims), False, reshape),
            )
        return io

    @classmethod
    def unchecked(cls, name: str) -> ModelIO:
        """A model without a config (a stub): nothing is checked, every output is returned."""
        return cls(name=name, max_batch_size=0, checked=False)


def dims_string(dims: Sequence[int]) -> str:
    """Triton's ``DimsListToString``: ``[-1,4]``."""
    return "[" + ",".join(str(int(d)) for d in dims) + "]"


def client_array(name: str, value: Any) -> tuple[np.ndarray, int]:
    """An input as a client sends it: BYTES as object arrays of ``bytes`` (``str`` as UTF-8); its type."""
    array = np.asarray(value)
    if array.dtype.kind in "OUS":
        flat = array.reshape(-1).tolist()
        for index, item in enumerate(flat):
            if isinstance(item, str):
                flat[index] = item.encode("utf-8")
            elif not isinstance(item, bytes):
                raise RequestError(
                    "INVALID_ARG",
                    f"input {name!r}: BYTES elements must be bytes or str, got {type(item).__name__}",
                )
        converted = np.empty(len(flat), dtype=np.object_)
        converted[:] = flat
        return converted.reshape(array.shape), dtypes.TYPE_BYTES
    bfloat16 = dtypes.bfloat16_dtype()
    if bfloat16 is not None and array.dtype == bfloat16:
        return np.ascontiguousarray(array).view(np.uint16), dtypes.TYPE_BF16
    triton_type = dtypes.triton_type_of(array.dtype)
    if triton_type is None or triton_type == dtypes.TYPE_BYTES:
        raise RequestError(
            "INVALID_ARG", f"input {name!r}: numpy dtype {array.dtype} has no Triton data type"
        )
    return np.ascontiguousarray(array), triton_type


def _prefix(request_id: str) -> str:
    return f"[request id: {request_id or '<id_unknown>'}] "


def check_request(
    io: ModelIO,
    inputs: Sequence[tuple[str, int, tuple[int, ...]]],
    requested: Sequence[str] | None,
    request_id: str = "",
) -> int:
    """Validate a request like the core; returns its batch size (0 for non-batching models).

    ``inputs`` are (name, Triton type, shape) in request order; the core walks them in the order of its
    ``unordered_map``, which decides the input an error names when several are wrong.
    """
    if not io.checked:
        return 0
    by_name = {name: (name, kind, shape) for name, kind, shape in inputs}
    inputs = [by_name[name] for name in unordered_order(by_name)]
    model = io.name
    prefix = _prefix(request_id)
    for name in requested or ():
        if name not in io.outputs:
            raise RequestError("INVALID_ARG", f"unexpected inference output '{name}' for model '{model}'")
    given = {name for name, _, _ in inputs}
    if len(inputs) > len(io.inputs) or len(inputs) < io.required_count:
        missing = [spec.name for spec in io.inputs.values() if not spec.optional and spec.name not in given]
        missing_text = "[" + ",".join(f"'{n}'" for n in missing) + "]" if missing else "]"
        got = "[" + ",".join(f"'{n}'" for n, _, _ in inputs) + "]" if inputs else "[]"
        if len(io.inputs) == io.required_count:
            head = f"expected {len(io.inputs)} inputs but got {len(inputs)} inputs for model '{model}'."
        else:
            head = (
                f"expected number of inputs between {io.required_count} and {len(io.inputs)} but got "
                f"{len(inputs)} inputs for model '{model}'."
            )
        raise RequestError(
            "INVALID_ARG",
            f"{prefix}{head} Got input(s) {got}, but missing required input(s) {missing_text}. "
            "Please provide all required input(s).",
        )
    batch_size = 0
    for name, _, shape in inputs:
        if name not in io.inputs:
            raise RequestError("INVALID_ARG", f"unexpected inference input '{name}' for model '{model}'")
        if io.max_batch_size > 0:
            if len(shape) == 0:
                raise RequestError(
                    "INVALID_ARG",
                    f"{prefix}input '{name}' has no shape but model requires batch dimension for '{model}'",
                )
            if batch_size == 0:
                batch_size = shape[0]
            elif shape[0] != batch_size:
                raise RequestError(
                    "INVALID_ARG",
                    f"{prefix}input '{name}' batch size does not match other inputs for '{model}'",
                )
    if batch_size > io.max_batch_size:
        raise RequestError(
            "INVALID_ARG",
            f"{prefix}inference request batch-size must be <= {io.max_batch_size} for '{model}'",
        )
    for name, triton_type, shape in inputs:
        spec = io.inputs[name]
        if triton_type != spec.triton_type:
            raise RequestError(
                "INVALID_ARG",
                f"{prefix}inference input '{name}' data-type is '{dtypes.PROTOCOL_NAMES[triton_type]}', but model "
                f"'{model}' expects '{dtypes.PROTOCOL_NAMES.get(spec.triton_type, 'INVALID')}'",
            )
        dims = shape[1:] if io.max_batch_size > 0 else shape
        matches = len(dims) == len(spec.dims) and all(
            c == -1 or c == d for c, d in zip(spec.dims, dims, strict=True)
        )
        if not matches:
            full = ((-1,) if io.max_batch_size > 0 else ()) + spec.dims
            note = _BATCH_NOTE if io.max_batch_size > 0 else ""
            raise RequestError(
                "INVALID_ARG",
                f"{prefix}unexpected shape for input '{name}' for model '{model}'. Expected {dims_string(full)}, "
                f"got {dims_string(shape)}. {note}",
            )
        # The core sizes the data by the shape "with batch dim", which omits the batch dim when the batch
        # size is 0: an empty batch fails here, naming the input.
        expected = math.prod(dims if batch_size == 0 else shape)
        given = math.prod(shape)
        if expected != given:
            if triton_type == dtypes.TYPE_BYTES:
                raise RequestError(
                    "INVALID_ARG",
                    f"{prefix}expected {expected} string elements for inference input '{name}' for model "
                    f"'{model}', got {given}",
                )
            size = dtypes.byte_size(triton_type)
            raise RequestError(
                "INVALID_ARG",
                f"{prefix}input byte size mismatch for input '{name}' for model '{model}'. Expected "
                f"{expected * size}, got {given * size}",
            )
    return batch_size


def reshaped(io: ModelIO, name: str, array: np.ndarray) -> np.ndarray:
    """The input as the model sees it when its config has ``reshape``."""
    spec = io.inputs.get(name)
    if spec is None or spec.reshape is None:
        return array
    batch = array.shape[:1] if io.max_batch_size > 0 else ()
    dims = array.shape[1:] if io.max_batch_size > 0 else array.shape
    variable = [d for c, d in zip(spec.dims, dims, strict=False) if c == -1]
    shape = [variable.pop(0) if d == -1 else d for d in spec.reshape]
    return array.reshape(tuple(batch) + tuple(shape))


def requested_outputs(io: ModelIO, requested: Sequence[str] | None) -> frozenset[str]:
    """The output names a request asks for: the given ones, else every output of the config."""
    if requested:
        return frozenset(requested)
    return frozenset(io.outputs)


def parameters_json(parameters: Mapping[str, bool | int | float | str] | None) -> str:
    """Request parameters as the model's ``parameters()`` shows them (gRPC: keys sorted, compact).

    Values may be bool, int, float or str, as tritonclient sends them (a float arrives as a double)."""
    import json

    if not parameters:
        return "{}"
    for key, value in parameters.items():
        if not isinstance(value, (bool, int, float, str)):
            raise RequestError(
                "INVALID_ARG",
                f"parameter {key!r}: values must be bool, int, float or str, got {type(value).__name__}",
            )
    return json.dumps(dict(sorted(parameters.items())), separators=(",", ":"))
