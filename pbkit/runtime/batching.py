"""The request batching loop: validate each request, gather, predict once, scatter back.

This module works on plain ``dict[str, numpy.ndarray]`` requests so it can be tested
without Triton; :mod:`pbkit.runtime.triton_model` adapts it to ``pb_utils``.

How requests are grouped (one ``predict`` call per group):

* requests that carry the same set of inputs (an optional input without a ``default`` is
  passed as ``None`` when absent; one with a ``default`` is filled in, so those batch together);
* whose variable (-1) dims agree, unless the input declares a ``pad_value``, in which case
  shorter requests are padded up to the longest in the group;
* and whose values of the model's ``group_by`` inputs are equal.

A request that fails validation gets INVALID_ARG and takes no part. When ``predict`` raises
for a group of several requests, each request is run again alone, so only the requests that
fail on their own get the error.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec.declare import BatchInfo
from ..spec.dtypes import DataType, describe_array_dtype
from ..spec.model import ModelSpec
from .errors import InvalidArgument, RequestFailed

INVALID_ARG = "INVALID_ARG"
INTERNAL = "INTERNAL"
#: How many (tensor, shape) pairs a loop remembers as fitting their declared dims.
_FITTING_SHAPES_LIMIT = 4096


@dataclass
class Request:
    """One request as the loop sees it."""

    inputs: dict[str, Any]
    requested_outputs: Sequence[str] | None = None
    #: The request's parameters, or a function that reads them when first asked for.
    parameters: Mapping[str, Any] | Callable[[], Mapping[str, Any]] = field(default_factory=dict)
    #: The request's id, or a function that reads it when first asked for.
    request_id: str | Callable[[], str] = ""
    batch_size: int = 0

    def get_parameters(self) -> Mapping[str, Any]:
        if callable(self.parameters):
            self.parameters = self.parameters()
        return self.parameters

    def get_request_id(self) -> str:
        if callable(self.request_id):
            self.request_id = self.request_id()
        return self.request_id


class RequestBatch(BatchInfo):
    """Per-request metadata of one ``predict`` call (annotate a parameter with ``BatchInfo``)."""

    def __init__(self, requests: Sequence[Request]) -> None:
        self._requests = requests
        self.batch_sizes: list[int] = [r.batch_size for r in requests]

    @property
    def parameters(self) -> list[Mapping[str, Any]]:
        """The request parameters of each request, in batch order."""
        return [r.get_parameters() for r in self._requests]

    @property
    def request_ids(self) -> list[str]:
        return [r.get_request_id() for r in self._requests]

    def row_parameters(self) -> list[Mapping[str, Any]]:
        """The parameters of the request each batch row came from, one entry per row."""
        return [params for r in self._requests for params in [r.get_parameters()] * r.batch_size]

    def __len__(self) -> int:
        return len(self._requests)


Result = dict[str, Any] | RequestFailed


class BatchingLoop:
    """Runs a declared model's ``predict`` over the requests of one ``execute`` call."""

    def __init__(
        self,
        spec: ModelSpec,
        predict: Callable[..., Any],
        validate: Callable[..., Any] | None = None,
    ) -> None:
        self.spec = spec
        self.predict = predict
        self.validate = validate
        self._inputs = {t.name: t for t in spec.inputs}
        self._outputs = {t.name: t for t in spec.outputs}
        #: The names of every declared output.
        self.all_outputs = frozenset(self._outputs)
        self._required = [t.name for t in spec.inputs if not t.optional]
        self._batch_info_param = _batch_info_parameter(predict)
        self._batched = spec.max_batch_size > 0
        self.is_async = inspect.iscoroutinefunction(predict) or inspect.isasyncgenfunction(predict)
        expected = ", ".join(f"{t.name} {t.describe()}" for t in spec.inputs) or "none"
        self._expected_inputs = expected
        # Served requests repeat a handful of shapes: each (tensor, shape) pair is checked
        # against the declared dims once, then found here.
        self._fitting_shapes: set[tuple[str, str, tuple[int, ...]]] = set()

    def _fits(self, kind: str, tensor: Any, shape: tuple[int, ...]) -> bool:
        """``tensor.dims_match(shape)``, remembered for the shapes that fit."""
        key = (kind, tensor.name, shape)
        if key in self._fitting_shapes:
            return True
        if not tensor.dims_match(shape):
            return False
        if len(self._fitting_shapes) >= _FITTING_SHAPES_LIMIT:
            self._fitting_shapes.clear()
        self._fitting_shapes.add(key)
        return True

    # ----------------------------------------------------------------- validation
    def check_request(self, request: Request) -> RequestFailed | None:
        """Validate one request in place (sets ``batch_size``); return its failure, if any."""
        inputs = request.inputs
        spec = self.spec
        for name in inputs:
            if name not in self._inputs:
                return RequestFailed(
                    INVALID_ARG,
                    f"unexpected input '{name}' for model '{spec.name}'; expected inputs: {self._expected_inputs}",
                )
        missing = [name for name in self._required if name not in inputs]
        if missing:
            return RequestFailed(
                INVALID_ARG,
                f"missing required input(s) {missing} for model '{spec.name}'; expected inputs: {self._expected_inputs}",
            )
        batch_size = None
        for name, array in inputs.items():
            tensor = self._inputs[name]
            failure = _check_array(spec.name, tensor, array, self._batched, self._fits)
            if failure:
                return failure
            rows = array.shape[0] if self._batched else 1
            if batch_size is None:
                batch_size = rows
            elif rows != batch_size:
                return RequestFailed(
                    INVALID_ARG,
                    f"input '{name}' has batch size {rows}, but other inputs of the request have {batch_size}",
                )
        if self._batched and batch_size is not None:
            if batch_size < 1:
                return RequestFailed(INVALID_ARG, f"request for model '{spec.name}' has batch size 0")
            if batch_size > spec.max_batch_size:
                return RequestFailed(
                    INVALID_ARG,
                    f"batch size {batch_size} of the request exceeds max_batch_size {spec.max_batch_size} "
                    f"of model '{spec.name}'",
                )
        request.batch_size = batch_size or 1
        if request.requested_outputs is not None:
            unknown = [n for n in request.requested_outputs if n not in self._outputs]
            if unknown:
                return RequestFailed(
                    INVALID_ARG,
                    f"unknown requested output(s) {unknown} for model '{spec.name}'; "
                    f"outputs are {list(self._outputs)}",
                )
        if self.validate is not None:
            try:
                self.validate(**self._model_view(request))
            except (InvalidArgument, ValueError, TypeError) as exc:
                return RequestFailed(INVALID_ARG, str(exc))
            except Exception as exc:
                return RequestFailed(INTERNAL, f"validate raised {type(exc).__name__}: {exc}")
        return None

    def _model_view(self, request: Request) -> dict[str, Any]:
        """The request's inputs as ``predict`` sees them: batch axis first, defaults filled."""
        view: dict[str, Any] = {}
        for tensor in self.spec.inputs:
            array = request.inputs.get(tensor.name)
            if array is None:
                if tensor.default is None:
                    view[tensor.name] = None
                    continue
                array = np.broadcast_to(tensor.default, (request.batch_size, *tensor.default.shape))
            elif not self._batched:
                array = array[np.newaxis]
            view[tensor.name] = array
        return view

    # ----------------------------------------------------------------- grouping
    def group(self, requests: Sequence[Request]) -> list[list[int]]:
        """Indices of the requests that can share one ``predict`` call."""
        if len(requests) == 1:
            return [[0]]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, request in enumerate(requests):
            key: list[Any] = []
            for tensor in self.spec.inputs:
                array = request.inputs.get(tensor.name)
                if array is None:
                    key.append(
                        None if tensor.default is None else _trailing_key(tensor, tensor.default.shape)
                    )
                    continue
                trailing = array.shape[1:] if self._batched else array.shape
                key.append(_trailing_key(tensor, trailing))
            for name in self.spec.group_by:
                array = request.inputs.get(name)
                key.append(None if array is None else _value_key(array))
            groups.setdefault(tuple(key), []).append(index)
        return list(groups.values())

    def gather(self, members: Sequence[Request]) -> dict[str, Any]:
        """Concatenate the members' inputs along the batch axis."""
        views = [self._model_view(r) for r in members]
        gathered: dict[str, Any] = {}
        for tensor in self.spec.inputs:
            arrays = [v[tensor.name] for v in views]
            if arrays[0] is None:
                gathered[tensor.name] = None
                continue
            if tensor.pad_value is not None:
                arrays = _pad_to_common_shape(arrays, tensor.pad_value)
            gathered[tensor.name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        if self._batch_info_param:
            gathered[self._batch_info_param] = RequestBatch(members)
        return gathered

    # ----------------------------------------------------------------- outputs
    def check_outputs(self, returned: Any, total: int, wanted: frozenset[str] | set[str]) -> dict[str, Any]:
        """Validate what ``predict`` returned; raise RequestFailed(INTERNAL) naming the output."""
        spec = self.spec
        if not isinstance(returned, Mapping):
            if len(spec.outputs) == 1 and _is_array_like(returned):
                returned = {spec.outputs[0].name: returned}
            else:
                raise RequestFailed(
                    INTERNAL,
                    f"predict of model '{spec.name}' must return a dict of outputs, got {type(returned).__name__}",
                )
        outputs: dict[str, Any] = {}
        for name, value in returned.items():
            tensor = self._outputs.get(name)
            if tensor is None:
                raise RequestFailed(
                    INTERNAL,
                    f"predict of model '{spec.name}' returned unknown output '{name}'; "
                    f"declared outputs: {list(self._outputs)}",
                )
            if name not in wanted:
                continue
            outputs[name] = _check_output(spec.name, tensor, value, total, self._fits)
        missing = [name for name in wanted if name not in outputs]
        if missing:
            raise RequestFailed(
                INTERNAL, f"predict of model '{spec.name}' did not return output(s) {sorted(missing)}"
            )
        return outputs

    def scatter(self, outputs: Mapping[str, Any], members: Sequence[Request]) -> list[dict[str, Any]]:
        if self._batched and len(members) == 1 and members[0].requested_outputs is None:
            return [dict(outputs)]  # the whole batch is the one request's
        results = []
        offset = 0
        for request in members:
            size = request.batch_size
            if self._batched:
                part = {name: value[offset : offset + size] for name, value in outputs.items()}
            else:
                part = {name: value[offset] for name, value in outputs.items()}
            offset += size
            if request.requested_outputs is not None:
                part = {name: part[name] for name in request.requested_outputs if name in part}
            results.append(part)
        return results

    def _wanted(self, members: Sequence[Request]) -> frozenset[str] | set[str]:
        wanted: set[str] = set()
        for request in members:
            if request.requested_outputs is None:
                return self.all_outputs
            wanted.update(request.requested_outputs)
        return wanted

    # ----------------------------------------------------------------- running
    def run(self, requests: Sequence[Request]) -> list[Result]:
        """Run non-decoupled ``predict`` over ``requests``; one result per request, in order."""
        if len(requests) == 1:  # the common case at low load: nothing to group
            failure = self.check_request(requests[0])
            return [failure] if failure is not None else self._run_group(requests)
        results: list[Result | None] = [self.check_request(r) for r in requests]
        valid = [i for i, failure in enumerate(results) if failure is None]
        for members in self.group([requests[i] for i in valid]):
            indices = [valid[m] for m in members]
            for index, result in zip(indices, self._run_group([requests[i] for i in indices]), strict=True):
                results[index] = result
        return typing.cast(list[Result], results)

    def _run_group(self, members: Sequence[Request]) -> list[Result]:
        try:
            outputs = self._call(members)
        except Exception as exc:
            if len(members) > 1:
                return [self._run_group([member])[0] for member in members]
            return [failure_from_exception(exc)]
        return outputs

    def _call(self, members: Sequence[Request]) -> list[Result]:
        total = sum(r.batch_size for r in members)
        returned = self.predict(**self.gather(members))
        try:
            outputs = self.check_outputs(returned, total, self._wanted(members))
        except RequestFailed as failure:
            return [failure] * len(members)
        return list(self.scatter(outputs, members))

    async def run_async(self, requests: Sequence[Request]) -> list[Result]:
        """Like :meth:`run` for an ``async def predict``."""
        results: list[Result | None] = [self.check_request(r) for r in requests]
        valid = [i for i, failure in enumerate(results) if failure is None]
        for members in self.group([requests[i] for i in valid]):
            indices = [valid[m] for m in members]
            for index, result in zip(
                indices, await self._run_group_async([requests[i] for i in indices]), strict=True
            ):
                results[index] = result
        return typing.cast(list[Result], results)

    async def _run_group_async(self, members: Sequence[Request]) -> list[Result]:
        try:
            total = sum(r.batch_size for r in members)
            returned = await self.predict(**self.gather(members))
        except Exception as exc:
            if len(members) > 1:
                return [(await self._run_group_async([member]))[0] for member in members]
            return [failure_from_exception(exc)]
        try:
            outputs = self.check_outputs(returned, total, self._wanted(members))
        except RequestFailed as failure:
            return [failure] * len(members)
        return list(self.scatter(outputs, members))

    def stream_group(self, members: Sequence[Request]) -> Iterator[list[Result]]:
        """Run a generator ``predict`` for one group, yielding one result per member each step.

        If the generator fails before its first output and the group has several members,
        each member is run again alone. A failure after outputs were sent ends the stream of
        every member of the group with that error.
        """
        total = sum(r.batch_size for r in members)
        wanted = self._wanted(members)
        sent = False
        try:
            for returned in self.predict(**self.gather(members)):
                outputs = self.check_outputs(returned, total, wanted)
                sent = True
                yield list(self.scatter(outputs, members))
        except Exception as exc:
            if not sent and len(members) > 1:
                yield from _merge_alone(self, members)
                return
            yield [failure_from_exception(exc)] * len(members)

    async def astream_group(self, members: Sequence[Request]) -> AsyncIterator[list[Result]]:
        """Like :meth:`stream_group` for an ``async def`` generator ``predict``."""
        total = sum(r.batch_size for r in members)
        wanted = self._wanted(members)
        sent = False
        try:
            async for returned in self.predict(**self.gather(members)):
                outputs = self.check_outputs(returned, total, wanted)
                sent = True
                yield list(self.scatter(outputs, members))
        except Exception as exc:
            if not sent and len(members) > 1:
                for position, member in enumerate(members):
                    async for step in self.astream_group([member]):
                        row: list[Any] = [None] * len(members)
                        row[position] = step[0]
                        yield row
                return
            yield [failure_from_exception(exc)] * len(members)


def _merge_alone(loop: BatchingLoop, members: Sequence[Request]) -> Iterator[list[Result]]:
    """Re-run each member alone, yielding full-width steps with ``None`` for the others."""
    for position, member in enumerate(members):
        for step in loop.stream_group([member]):
            row: list[Any] = [None] * len(members)
            row[position] = step[0]
            yield row


def failure_from_exception(exc: BaseException) -> RequestFailed:
    """The error a client sees for an exception raised by model code."""
    if isinstance(exc, RequestFailed):
        return exc
    if isinstance(exc, InvalidArgument):
        return RequestFailed(INVALID_ARG, str(exc))
    return RequestFailed(INTERNAL, f"{type(exc).__name__}: {exc}")


def _batch_info_parameter(predict: Callable[..., Any]) -> str | None:
    try:
        hints = typing.get_type_hints(predict)
    except Exception:
        hints = getattr(predict, "__annotations__", {})
    for name, annotation in hints.items():
        if annotation is BatchInfo or (inspect.isclass(annotation) and issubclass(annotation, BatchInfo)):
            return name
    return None


def _trailing_key(tensor: Any, trailing: tuple[int, ...]) -> Any:
    """What must agree between requests for ``tensor`` to be concatenated."""
    return len(trailing) if tensor.pad_value is not None else tuple(trailing)


def _value_key(array: np.ndarray) -> Any:
    if array.dtype == object:
        return tuple(array.ravel().tolist())
    return (array.dtype.str, array.shape, array.tobytes())


def _pad_to_common_shape(arrays: list[np.ndarray], pad_value: Any) -> list[np.ndarray]:
    target = np.max([a.shape for a in arrays], axis=0)
    padded = []
    for array in arrays:
        widths = [(0, 0)] + [(0, int(t - s)) for t, s in zip(target[1:], array.shape[1:], strict=True)]
        padded.append(
            np.pad(array, widths, constant_values=pad_value) if any(w for _, w in widths) else array
        )
    return padded


def _check_array(
    model: str, tensor: Any, array: Any, batched: bool, fits: Callable[[str, Any, tuple[int, ...]], bool]
) -> RequestFailed | None:
    if not isinstance(array, np.ndarray):
        return RequestFailed(
            INVALID_ARG, f"input '{tensor.name}' must be a numpy array, got {type(array).__name__}"
        )
    expected = tensor.dtype
    if expected is DataType.BYTES:
        if array.dtype != object:
            return RequestFailed(
                INVALID_ARG,
                f"input '{tensor.name}' of model '{model}': expected data type BYTES, got "
                f"{describe_array_dtype(array)}",
            )
        for element in array.flat:
            if not isinstance(element, bytes):
                return RequestFailed(
                    INVALID_ARG,
                    f"input '{tensor.name}' of model '{model}': BYTES elements must be bytes, "
                    f"got {type(element).__name__}",
                )
    elif array.dtype != _NUMPY_OF[expected]:
        return RequestFailed(
            INVALID_ARG,
            f"input '{tensor.name}' of model '{model}': expected data type {expected.value}, got "
            f"{describe_array_dtype(array)}",
        )
    shape = array.shape[1:] if batched else array.shape
    if batched and array.ndim == 0:
        shape = None
    if shape is None or not fits("input", tensor, tuple(shape)):
        expected_shape = ([-1] if batched else []) + list(tensor.dims)
        return RequestFailed(
            INVALID_ARG,
            f"input '{tensor.name}' of model '{model}': expected shape {expected_shape}, got {list(array.shape)}",
        )
    return None


def _is_array_like(value: Any) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "__dlpack__")


_NUMPY_OF: dict[DataType, np.dtype[Any]] = {member: member.numpy for member in DataType}
_TRITON_TYPE_OF: dict[np.dtype[Any], DataType | None] = {}


def _triton_type(dtype: np.dtype[Any]) -> DataType | None:
    """The Triton type of a numpy dtype (BYTES for object and string kinds), None if it has none; memoised."""
    try:
        return _TRITON_TYPE_OF[dtype]
    except KeyError:
        pass
    if dtype.kind in "OSU":
        actual: DataType | None = DataType.BYTES
    else:
        try:
            actual = DataType.from_numpy(dtype)
        except ValueError:
            actual = None
    if len(_TRITON_TYPE_OF) < 256:
        _TRITON_TYPE_OF[dtype] = actual
    return actual


_TORCH_DTYPES = {
    "torch.bool": DataType.BOOL,
    "torch.uint8": DataType.UINT8,
    "torch.uint16": DataType.UINT16,
    "torch.uint32": DataType.UINT32,
    "torch.uint64": DataType.UINT64,
    "torch.int8": DataType.INT8,
    "torch.int16": DataType.INT16,
    "torch.int32": DataType.INT32,
    "torch.int64": DataType.INT64,
    "torch.float16": DataType.FP16,
    "torch.float32": DataType.FP32,
    "torch.float64": DataType.FP64,
}


def _check_output(
    model: str, tensor: Any, value: Any, total: int, fits: Callable[[str, Any, tuple[int, ...]], bool]
) -> Any:
    if tensor.dtype is DataType.BYTES:
        value = to_bytes_array(value, f"output '{tensor.name}' of model '{model}'")
        actual = DataType.BYTES
    elif isinstance(value, np.ndarray):
        actual = _triton_type(value.dtype)
    elif hasattr(value, "__dlpack__") and hasattr(value, "dtype"):
        actual = _TORCH_DTYPES.get(str(value.dtype))
    else:
        raise RequestFailed(
            INTERNAL,
            f"output '{tensor.name}' of model '{model}': expected an array, got {type(value).__name__}",
        )
    if actual is not tensor.dtype:
        raise RequestFailed(
            INTERNAL,
            f"output '{tensor.name}' of model '{model}': expected data type {tensor.dtype.value}, "
            f"got {describe_array_dtype(value)}",
        )
    shape = tuple(value.shape)
    if not shape or shape[0] != total or not fits("output", tensor, shape[1:]):
        raise RequestFailed(
            INTERNAL,
            f"output '{tensor.name}' of model '{model}': expected shape {[total, *tensor.dims]} "
            f"(batch of {total}), got {list(shape)}",
        )
    return value


def to_bytes_array(value: Any, where: str) -> np.ndarray:
    """Turn an array or list of bytes/str into an object array of bytes."""
    array = value if isinstance(value, np.ndarray) else np.array(value, dtype=object)
    if array.dtype.kind == "S":
        return np.array([bytes(v) for v in array.ravel()] or [], dtype=object).reshape(array.shape)
    if array.dtype.kind not in "OU":
        raise RequestFailed(INTERNAL, f"{where}: expected data type BYTES, got {describe_array_dtype(array)}")
    flat = array.ravel()
    out = np.empty(flat.shape, dtype=object)
    for i, element in enumerate(flat):
        if isinstance(element, bytes):
            out[i] = element
        elif isinstance(element, str):
            out[i] = element.encode("utf-8")
        else:
            raise RequestFailed(
                INTERNAL, f"{where}: BYTES elements must be bytes or str, got {type(element).__name__}"
            )
    return out.reshape(array.shape)
