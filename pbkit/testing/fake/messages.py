"""Requests, responses, the response sender and the BLS response iterator of ``pb_utils``."""

from __future__ import annotations

import asyncio
import contextvars
import enum
import json
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import context
from .errors import TritonError, TritonModelException, incompatible_arguments
from .tensor import Tensor

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2


class MemoryType(enum.IntEnum):
    """Where a BLS caller prefers its outputs (``TRITONSERVER_MEMORY_GPU``/``_CPU``)."""

    TRITONSERVER_MEMORY_GPU = 0
    TRITONSERVER_MEMORY_CPU = 1


TRITONSERVER_MEMORY_GPU = MemoryType.TRITONSERVER_MEMORY_GPU
TRITONSERVER_MEMORY_CPU = MemoryType.TRITONSERVER_MEMORY_CPU


class PreferredMemory:
    """``PreferredMemory(preferred_memory_type, preferred_device_id=0)``."""

    __slots__ = ("preferred_device_id", "preferred_memory_type")

    def __init__(self, preferred_memory_type: MemoryType, preferred_device_id: int = 0) -> None:
        if not isinstance(preferred_memory_type, MemoryType) or not isinstance(preferred_device_id, int):
            raise incompatible_arguments(
                "c_python_backend_utils.PreferredMemory",
                "preferred_memory_type: c_python_backend_utils.MemoryType, preferred_device_id: int = 0",
                (preferred_memory_type, preferred_device_id),
                {},
            )
        self.preferred_memory_type: MemoryType | None = preferred_memory_type
        self.preferred_device_id = preferred_device_id


def _default_preferred_memory() -> PreferredMemory:
    memory = PreferredMemory.__new__(PreferredMemory)
    memory.preferred_memory_type = None  # kDefault: outputs stay where the callee produced them
    memory.preferred_device_id = 0
    return memory


class InferenceTrace:
    """The trace of a request; tracing is off in-process, so there is no context."""

    __slots__ = ()

    def get_context(self) -> str | None:
        """The trace context (None when tracing is off)."""
        return None


def _parameters_json(parameters: Any, compact: bool) -> str:
    if parameters is None:
        return "{}"
    if not isinstance(parameters, dict):
        raise TritonModelException(f"Expect N8pybind114dictE, got {type(parameters)}")
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(f"Expect parameters keys to have type str, found type {type(key)}")
        if not isinstance(value, (bool, int, str)):
            raise TritonModelException(
                f"Expect parameters values to have type bool/int/str, found type {type(value)}"
            )
    return json.dumps(parameters, separators=(",", ":")) if compact else json.dumps(parameters)


class InferenceResponse:
    """``InferenceResponse(output_tensors=[], error=None, parameters=None)``.

    ``parameters`` (a dict of str → bool/int/str, exposed as a JSON string) exists in recent Triton
    releases; Triton 2.51 rejects it.
    """

    __slots__ = ("__weakref__", "_error", "_is_last", "_parameters", "_tensors")

    def __init__(
        self,
        output_tensors: Sequence[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: dict[str, bool | int | str] | None = None,
    ) -> None:
        tensors = [] if output_tensors is None else output_tensors
        bad_list = isinstance(tensors, (str, bytes, dict)) or not isinstance(tensors, Sequence)
        if bad_list or any(t is not None and not isinstance(t, Tensor) for t in tensors):
            raise incompatible_arguments(
                "c_python_backend_utils.InferenceResponse",
                "output_tensors: List[c_python_backend_utils.Tensor] = [], "
                "error: c_python_backend_utils.TritonError = None",
                (),
                {"output_tensors": output_tensors},
            )
        if error is not None and not isinstance(error, TritonError):
            raise incompatible_arguments(
                "c_python_backend_utils.InferenceResponse",
                "output_tensors: List[c_python_backend_utils.Tensor] = [], "
                "error: c_python_backend_utils.TritonError = None",
                (),
                {"error": error},
            )
        if any(t is None for t in tensors):
            raise TritonModelException("Output tensor for inference response should not be empty.")
        self._tensors: list[Tensor] = list(tensors)
        self._error = error
        self._parameters = _parameters_json(parameters, compact=False)
        self._is_last = True

    def output_tensors(self) -> list[Tensor]:
        """The output tensors (a new list each call)."""
        return list(self._tensors)

    def has_error(self) -> bool:
        """Whether the response carries an error."""
        return self._error is not None

    def error(self) -> TritonError | None:
        """The error, or None."""
        return self._error

    def parameters(self) -> str:
        """The response parameters as a JSON string."""
        return self._parameters

    def __repr__(self) -> str:
        if self._error is not None:
            return f"<InferenceResponse error={self._error.message()!r}>"
        return f"<InferenceResponse {[t.name() for t in self._tensors]}>"


def error_response(message: str, *, last: bool = True) -> InferenceResponse:
    """A response carrying ``TritonError(message)`` (code INTERNAL), as BLS failures arrive."""
    response = InferenceResponse(error=TritonError(message))
    response._is_last = last
    return response


def prune(response: InferenceResponse, requested: set[str] | frozenset[str]) -> None:
    """Drop output tensors that were not requested (the stub's ``PruneOutputTensors``)."""
    response._tensors = [t for t in response._tensors if t.name() in requested]


class InferenceResponseSender:
    """``request.get_response_sender()``: sends responses, enforcing the Python backend's rules."""

    __slots__ = ("_closed", "_deliver", "_is_cancelled", "_is_decoupled", "_lock", "_requested", "_sent")

    def __init__(
        self,
        *,
        is_decoupled: bool | None,
        requested_output_names: frozenset[str],
        deliver: Callable[[InferenceResponse | None, int], None] | None,
        is_cancelled: Callable[[], bool],
    ) -> None:
        self._is_decoupled = is_decoupled
        self._requested = requested_output_names
        self._deliver = deliver
        self._is_cancelled = is_cancelled
        self._lock = threading.Lock()
        self._closed = False
        self._sent = 0

    def _update_state(self, response: InferenceResponse | None, flags: int) -> None:
        if self._is_decoupled is None:
            raise TritonModelException(
                "Unable to send response. Response sender has no reference to the decoupled state of the model."
            )
        with self._lock:
            if not self._is_decoupled:
                if response is not None and self._sent > 0:
                    raise TritonModelException(
                        "Unable to send response. Non-decoupled model cannot send more than one response."
                    )
                if response is None and flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL and self._sent == 0:
                    raise TritonModelException(
                        "Unable to send response. Non-decoupled model cannot send complete final before "
                        "sending a response."
                    )
            if self._closed:
                raise TritonModelException("Unable to send response. Response sender has been closed.")
            if flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                self._closed = True
            self._sent += 1

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        """Send ``response`` (and/or the final flag)."""
        if response is not None and not isinstance(response, InferenceResponse):
            raise TypeError(
                "send(): incompatible function arguments. The following argument types are supported:\n"
                "    1. (self: c_python_backend_utils.InferenceResponseSender, response: "
                "c_python_backend_utils.InferenceResponse = None, flags: int = 0) -> None"
            )
        if flags != TRITONSERVER_RESPONSE_COMPLETE_FINAL and flags != 0:
            raise TritonModelException("Unable to send response. Unsupported flag provided.")
        if flags == 0 and response is None:
            raise TritonModelException(
                "Inference Response object must be provided when the response flags is set to zero."
            )
        self._update_state(response, flags)
        if response is not None:
            prune(response, self._requested)
        if self._deliver is not None:
            self._deliver(response, flags)

    def is_cancelled(self) -> bool:
        """Whether the client cancelled the request."""
        return self._is_cancelled()

    def _close(self) -> None:
        """Close the sender (after the batch failed), as the stub does."""
        with self._lock:
            self._closed = True

    @property
    def _is_closed(self) -> bool:
        return self._closed


class ResponseIterator:
    """The responses of a decoupled BLS call (``exec(decoupled=True)``), in order, ending after the final one."""

    __slots__ = ("_cancel", "_finished", "_index", "_queue", "_seen")

    def __init__(self, cancel: Callable[[], None] | None = None) -> None:
        self._queue: queue.Queue[InferenceResponse] = queue.Queue()
        self._seen: list[InferenceResponse] = []
        self._finished = False
        self._index = 0
        self._cancel = cancel

    def _put(self, response: InferenceResponse) -> None:
        self._queue.put(response)

    def __iter__(self) -> ResponseIterator:
        if self._finished and self._index >= len(self._seen):
            self._index = 0
        return self

    def __next__(self) -> InferenceResponse:
        if self._finished:
            if self._index < len(self._seen):
                self._index += 1
                return self._seen[self._index - 1]
            raise StopIteration("Iteration is done for the responses.")
        response = self._queue.get()
        self._seen.append(response)
        if response._is_last:
            self._finished = True
            self._index = len(self._seen)
        return response

    def cancel(self) -> None:
        """Ask the callee to stop (recent Triton releases); it sees ``is_cancelled()``."""
        if self._cancel is not None:
            self._cancel()


_MISSING: Any = object()
_REQUEST_SIGNATURE = (
    "request_id: str = '', correlation_id: object = 0, inputs: List[triton::backend::python::PbTensor], "
    "requested_output_names: List[str], model_name: str, model_version: int = -1, flags: int = 0, "
    "timeout: int = 0, preferred_memory: c_python_backend_utils.PreferredMemory = <PreferredMemory>, "
    "trace: c_python_backend_utils.InferenceTrace = <InferenceTrace>, parameters: object = None"
)


class InferenceRequest:
    """A request: as ``execute`` receives it, or built by a model for a BLS call and run with :meth:`exec`."""

    __slots__ = (
        "__weakref__",
        "_correlation_id",
        "_flags",
        "_inputs",
        "_is_cancelled",
        "_model_name",
        "_model_version",
        "_parameters",
        "_preferred_memory",
        "_release_flags",
        "_request_id",
        "_requested",
        "_sender",
        "_timeout",
        "_trace",
        "_transport",
    )

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: Sequence[Tensor] = _MISSING,
        requested_output_names: Sequence[str] = _MISSING,
        model_name: str = _MISSING,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: PreferredMemory = _MISSING,
        trace: InferenceTrace = _MISSING,
        parameters: dict[str, bool | int | str] | None = None,
    ) -> None:
        given = {
            "request_id": request_id,
            "correlation_id": correlation_id,
            "inputs": inputs,
            "requested_output_names": requested_output_names,
            "model_name": model_name,
            "model_version": model_version,
            "flags": flags,
            "timeout": timeout,
        }
        shown = {k: v for k, v in given.items() if v is not _MISSING}
        if (
            inputs is _MISSING
            or requested_output_names is _MISSING
            or model_name is _MISSING
            or not isinstance(request_id, str)
            or correlation_id is None
            or not _is_sequence_of(inputs, Tensor, allow_none=True)
            or not _is_sequence_of(requested_output_names, str)
            or not isinstance(model_name, str)
            or not _is_int(model_version)
            or not _is_int(flags, unsigned=True)
            or not _is_int(timeout, unsigned=True)
            or (preferred_memory is not _MISSING and not isinstance(preferred_memory, PreferredMemory))
            or (trace is not _MISSING and not isinstance(trace, InferenceTrace))
        ):
            raise incompatible_arguments(
                "c_python_backend_utils.InferenceRequest", _REQUEST_SIGNATURE, (), shown
            )
        parameters_json = _parameters_json(parameters, compact=False)
        if not isinstance(correlation_id, (int, str)):
            raise TritonModelException("Correlation ID must be integer or string")
        for tensor in inputs:
            if tensor is None:
                raise TritonModelException(
                    f"Input tensor for request with id '{request_id}' and model name '{model_name}' "
                    "should not be empty."
                )
        for name in requested_output_names:
            if name == "":
                raise TritonModelException(
                    f"Requested output name for request with id '{request_id}' and model name '{model_name}' "
                    "should not be empty."
                )
        self._request_id = request_id
        self._correlation_id = int(correlation_id) if isinstance(correlation_id, bool) else correlation_id
        self._inputs = list(inputs)
        self._requested = frozenset(requested_output_names)
        self._model_name = model_name
        self._model_version = int(model_version)
        self._flags = int(flags)
        self._timeout = int(timeout)
        self._preferred_memory = (
            _default_preferred_memory() if preferred_memory is _MISSING else preferred_memory
        )
        self._trace = InferenceTrace() if trace is _MISSING else trace
        self._parameters = parameters_json
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        self._is_cancelled: Callable[[], bool] = _never
        self._sender = InferenceResponseSender(
            is_decoupled=None, requested_output_names=self._requested, deliver=None, is_cancelled=_never
        )
        self._transport: Any = None

    @classmethod
    def _received(
        cls,
        *,
        inputs: list[Tensor],
        requested_output_names: frozenset[str],
        model_name: str,
        model_version: int,
        parameters_json: str,
        request_id: str = "",
        correlation_id: int | str = 0,
        flags: int = 0,
        timeout: int = 0,
        is_decoupled: bool,
        deliver: Callable[[InferenceResponse | None, int], None],
        is_cancelled: Callable[[], bool],
        transport: Any = None,
    ) -> InferenceRequest:
        """A request as ``execute`` receives it from the server."""
        request = cls.__new__(cls)
        request._request_id = request_id
        request._correlation_id = correlation_id
        request._inputs = inputs
        request._requested = requested_output_names
        request._model_name = model_name
        request._model_version = model_version
        request._flags = flags
        request._timeout = timeout
        request._preferred_memory = _default_preferred_memory()
        request._trace = InferenceTrace()
        request._parameters = parameters_json
        request._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        request._is_cancelled = is_cancelled
        request._sender = InferenceResponseSender(
            is_decoupled=is_decoupled,
            requested_output_names=requested_output_names,
            deliver=deliver,
            is_cancelled=is_cancelled,
        )
        request._transport = transport
        return request

    # ------------------------------------------------------------------ accessors
    def inputs(self) -> list[Tensor]:
        """The input tensors (a new list each call; the same tensors)."""
        return list(self._inputs)

    def request_id(self) -> str:
        """The request id ("" when the client set none)."""
        return self._request_id

    def correlation_id(self) -> int | str:
        """The sequence correlation id (0 when none)."""
        return self._correlation_id

    def flags(self) -> int:
        """The request flags (``TRITONSERVER_REQUEST_FLAG_SEQUENCE_*``)."""
        return self._flags

    def set_flags(self, flags: int) -> None:
        """Set the request flags."""
        self._flags = int(flags)

    def timeout(self) -> int:
        """The request timeout in microseconds (0: none)."""
        return self._timeout

    def parameters(self) -> str:
        """The request parameters as a JSON string."""
        return self._parameters

    def trace(self) -> InferenceTrace:
        """The request's trace."""
        return self._trace

    def requested_output_names(self) -> set[str]:
        """The names of the outputs the client asked for (all outputs when it named none)."""
        return set(self._requested)

    def get_response_sender(self) -> InferenceResponseSender:
        """The sender for this request's responses."""
        if self._transport is not None:
            self._transport.sender_taken = True
        return self._sender

    def is_cancelled(self) -> bool:
        """Whether the client cancelled the request."""
        return self._is_cancelled()

    def set_release_flags(self, flags: int) -> None:
        """``TRITONSERVER_REQUEST_RELEASE_RESCHEDULE`` asks Triton to run the request again."""
        self._release_flags = int(flags)

    # ------------------------------------------------------------------ BLS
    def exec(self, decoupled: bool = False) -> InferenceResponse | ResponseIterator:
        """Run this request on ``model_name``; errors come back as error responses, never raised."""
        if isinstance(decoupled, (str, bytes)) or not hasattr(decoupled, "__bool__"):
            raise TypeError(
                "exec(): incompatible function arguments. The following argument types are supported:\n"
                "    1. (self: c_python_backend_utils.InferenceRequest, decoupled: bool = False) -> object\n\n"
                f"Invoked with: {self!r}, {decoupled!r}"
            )
        decoupled = bool(decoupled)
        instance = context.current_instance()
        if instance is None or not instance.initialized or instance.finalizing:
            raise TritonModelException("BLS is only supported during the 'execute' function.")
        return instance.host.bls_execute(self, decoupled, instance)

    def async_exec(self, decoupled: bool = False) -> asyncio.Future[Any]:
        """:meth:`exec` in the running event loop's executor; await the result."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return loop.run_in_executor(None, ctx.run, self.exec, decoupled)

    def __repr__(self) -> str:
        return f"<InferenceRequest model={self._model_name!r} inputs={[t.name() for t in self._inputs]}>"


def _never() -> bool:
    return False


def _is_int(value: Any, unsigned: bool = False) -> bool:
    return isinstance(value, int) and (not unsigned or value >= 0)


def _is_sequence_of(value: Any, kind: type, allow_none: bool = False) -> bool:
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        return False
    return all(isinstance(v, kind) or (allow_none and v is None) for v in value)


def release_flags(request: InferenceRequest) -> int:
    """The release flags the model set."""
    return request._release_flags


def requested_names(request: InferenceRequest) -> frozenset[str]:
    """The requested output names, without copying."""
    return request._requested


def bls_target(request: InferenceRequest) -> tuple[str, int, list[Tensor], str, int | str, int, int]:
    """Model name, version, inputs, request id, correlation id, flags and timeout of a BLS request."""
    return (
        request._model_name,
        request._model_version,
        request._inputs,
        request._request_id,
        request._correlation_id,
        request._flags,
        request._timeout,
    )


def bls_parameters(request: InferenceRequest) -> dict[str, Any]:
    """A BLS request's parameters as a dict."""
    return json.loads(request._parameters)


def sender_of(request: InferenceRequest) -> InferenceResponseSender:
    """The request's sender."""
    return request._sender
