"""A real local tritonserver for tests: :class:`TritonServer` implements :class:`~pbkit.testing.client.TritonClient`.

::

    with TritonServer("model_repository") as server:          # free ports, waits until ready
        out = server.infer("add_sub", {"INPUT0": a, "INPUT1": b})   # over gRPC (the default)
        same = server.client("http").infer("add_sub", {...})        # same server, over HTTP
        for part in server.stream("repeat", {...}):                 # decoupled model, gRPC streaming
            ...

Conventions (shared with the in-process harness)
-----------------------------------------------
* BYTES tensors are numpy object arrays of :class:`bytes`; ``str``/``np.str_``/``np.bytes_`` inputs are
  converted (str as UTF-8). HTTP sends and receives binary tensor data, so empty, non-UTF-8 and binary
  values round-trip exactly.
* Every failure raises :class:`~pbkit.testing.client.InferError`; a call that gets no answer within its
  timeout (default :data:`DEFAULT_TIMEOUT`) raises :class:`InferTimeout` (code ``UNAVAILABLE``, the code
  Triton itself gives a request whose timeout expired).

Error codes
-----------
gRPC carries Triton's error code as the gRPC status: ``INVALID_ARGUMENT`` → ``INVALID_ARG``,
``UNIMPLEMENTED`` → ``UNSUPPORTED``, and INTERNAL, NOT_FOUND, UNAVAILABLE, ALREADY_EXISTS, CANCELLED,
UNKNOWN by name.

gRPC *streaming* (:meth:`TritonServerClient.stream`) is different: Triton 2.51 sends an error response
as a bare message, without its code. The code is recovered from the message for Triton's own errors
(input validation → ``INVALID_ARG``, unknown model → ``NOT_FOUND``, ``execute`` raised or a dead stub →
``INTERNAL``; see :func:`code_from_stream_message`); an error a decoupled model sends itself
(``TritonError(msg, code)``) comes back as ``UNKNOWN`` with ``msg``. Triton's opt-in
``triton_grpc_error`` stream header would carry real codes, but with it tritonserver 2.51 crashes
(SIGSEGV in ``TRITONBACKEND_ResponseFactorySendFlags``) when a decoupled model sends an error response
followed by its final flag, so it is not used. After an error response the stream is half-closed
(not cancelled) so the model can send its final flag; leaving the loop early cancels the request, as a
disconnecting client would.

Triton's HTTP frontend (``HttpCodeFromError`` in server ``src/http_server.cc``, 2.51) maps
INTERNAL → 500, NOT_FOUND → 404, UNAVAILABLE → 503, UNSUPPORTED → 501, and INVALID_ARG, UNKNOWN,
ALREADY_EXISTS, CANCELLED all → 400. This client maps back 500/404/503/501 exactly and 400 to
``INVALID_ARG``: **over HTTP, UNKNOWN, ALREADY_EXISTS and CANCELLED cannot be told apart from
INVALID_ARG** (use gRPC when a test must see those codes). Any other HTTP status maps to ``UNKNOWN``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pbkit.server.locate import TritonInstallation
from pbkit.server.process import HealthReport, ModelState, TritonProcess, TritonStartError

from .client import InferError, Inputs, Outputs, Parameters

__all__ = [
    "DEFAULT_TIMEOUT",
    "HTTP_STATUS_TO_CODE",
    "InferTimeout",
    "TritonServer",
    "TritonServerClient",
    "code_from_stream_message",
    "find_free_ports",
]

ProtocolName = Literal["grpc", "http"]
PROTOCOLS: tuple[str, ...] = ("grpc", "http")
#: Seconds a client call may take unless told otherwise.
DEFAULT_TIMEOUT = 120.0

#: Triton's HTTP status for each error code, reversed; 400 is ambiguous (see the module docstring).
HTTP_STATUS_TO_CODE: dict[int, str] = {
    400: "INVALID_ARG",
    404: "NOT_FOUND",
    500: "INTERNAL",
    501: "UNSUPPORTED",
    503: "UNAVAILABLE",
}
_GRPC_STATUS_TO_CODE: dict[str, str] = {
    "INVALID_ARGUMENT": "INVALID_ARG",
    "UNIMPLEMENTED": "UNSUPPORTED",
    **{
        code: code
        for code in ("INTERNAL", "NOT_FOUND", "UNAVAILABLE", "ALREADY_EXISTS", "CANCELLED", "UNKNOWN")
    },
}
_FINAL_RESPONSE_PARAMETER = "triton_final_response"
# Messages of Triton's core and Python backend (2.51), with the code the same failure has over plain infer.
_STREAM_MESSAGE_CODES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), code)
    for pattern, code in (
        (r"^Request for unknown model|has no available versions", "NOT_FOUND"),
        (
            r"unexpected inference (input|output)|expected \d+ inputs but got|data-type is '.*' expects"
            r"|unexpected shape for input|batch-size must be|byte size mismatch|unexpected number of string elements",
            "INVALID_ARG",
        ),
        (r"^Failed to process the request\(s\)|^Stub process .* is not healthy", "INTERNAL"),
        (r"is not ready|^Request timeout expired", "UNAVAILABLE"),
        (r"doesn't support models with decoupled", "UNSUPPORTED"),
        (r"^Request was cancelled|^Cancelled", "CANCELLED"),
    )
)


class InferTimeout(InferError):
    """No answer within the call's timeout; ``code`` is ``UNAVAILABLE``."""


def find_free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free on ``host`` a moment ago (bound to port 0, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --------------------------------------------------------------------------- conversions
def _as_triton_array(name: str, value: Any) -> np.ndarray:
    """``value`` as an array tritonclient can send: BYTES become object arrays of bytes."""
    array = np.asarray(value)
    if array.dtype.kind in "OUS":
        flat = [_as_bytes(name, item) for item in array.reshape(-1)]
        converted = np.empty(len(flat), dtype=np.object_)
        converted[:] = flat
        return converted.reshape(array.shape)
    return np.ascontiguousarray(array)


def _as_bytes(name: str, item: Any) -> bytes:
    if isinstance(item, bytes):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("utf-8")
    raise InferError(
        "INVALID_ARG", f"input {name!r}: BYTES elements must be bytes or str, got {type(item).__name__}"
    )


def _triton_dtype(name: str, array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    dtype = np_to_triton_dtype(array.dtype)
    if dtype is None:
        raise InferError("INVALID_ARG", f"input {name!r}: numpy dtype {array.dtype} has no Triton data type")
    return str(dtype)


def _version_string(version: int | str | None) -> str:
    return "" if version is None else str(version)


def _error_from_grpc(error: Exception, what: str, timeout: float) -> InferError:
    status = getattr(error, "status", lambda: None)()
    message = getattr(error, "message", lambda: None)() or str(error)
    name = str(status).rsplit(".", 1)[-1] if status else ""
    if name == "DEADLINE_EXCEEDED":
        return InferTimeout("UNAVAILABLE", f"{what}: no answer within {timeout:g} s ({message})")
    if not name:
        # A stream error response carries only its message (see the module docstring).
        return InferError(code_from_stream_message(message), message)
    return InferError(_GRPC_STATUS_TO_CODE.get(name, "UNKNOWN"), message)


def code_from_stream_message(message: str) -> str:
    """The error code for a gRPC stream error, which Triton sends without one: recognised for Triton's
    own messages (request validation, unknown model, failed ``execute``, dead stub), else ``UNKNOWN``."""
    for pattern, code in _STREAM_MESSAGE_CODES:
        if pattern.search(message):
            return code
    return "UNKNOWN"


def _error_from_http(error: Exception, what: str, timeout: float) -> InferError:
    from tritonclient.utils import InferenceServerException

    if isinstance(error, InferenceServerException):
        status = error.status()
        message = error.message() or str(error)
        code = (
            HTTP_STATUS_TO_CODE.get(int(status), "UNKNOWN") if status and str(status).isdigit() else "UNKNOWN"
        )
        return InferError(code, message)
    if _is_timeout(error):
        return InferTimeout("UNAVAILABLE", f"{what}: no answer within {timeout:g} s ({type(error).__name__})")
    if isinstance(error, OSError):
        return InferError("UNAVAILABLE", f"{what}: {type(error).__name__}: {error}")
    return InferError("UNKNOWN", f"{what}: {type(error).__name__}: {error}")


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, (TimeoutError, socket.timeout)):
        return True
    try:
        import gevent
    except ImportError:  # pragma: no cover - tritonclient[http] always brings gevent
        return False
    return isinstance(error, gevent.Timeout)


# --------------------------------------------------------------------------- the client view
class TritonServerClient:
    """A :class:`~pbkit.testing.client.TritonClient` talking to one running :class:`TritonServer`.

    Views are cheap: :meth:`client` returns another view of the same server with another protocol or
    default timeout. tritonclient objects are not thread-safe, so each view keeps one per thread.
    """

    def __init__(
        self, server: TritonServer, protocol: ProtocolName | str = "grpc", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self._server = server
        self.protocol: str = protocol
        self.timeout = timeout
        self._local = threading.local()
        self._all_clients: list[Any] = []
        self._clients_lock = threading.Lock()

    # ---------------------------------------------------------------- views
    def client(
        self, protocol: ProtocolName | str | None = None, *, timeout: float | None = None
    ) -> TritonServerClient:
        """A view of the same server speaking ``protocol`` (``"grpc"`` or ``"http"``); closed with the server."""
        view = TritonServerClient(
            self._server, protocol or self.protocol, self.timeout if timeout is None else timeout
        )
        self._server._views.add(view)
        return view

    @property
    def server(self) -> TritonServer:
        """The server this view talks to."""
        return self._server

    # ---------------------------------------------------------------- tritonclient objects
    def _thread_clients(self) -> dict[Any, Any]:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        return clients

    def _remember(self, client: Any) -> Any:
        with self._clients_lock:
            self._all_clients.append(client)
        return client

    def _grpc_client(self) -> Any:
        import tritonclient.grpc as grpcclient

        clients = self._thread_clients()
        key = ("grpc", self._server.grpc_url)
        if key not in clients:
            clients[key] = self._remember(grpcclient.InferenceServerClient(self._server.grpc_url))
        return clients[key]

    def _http_client(self, timeout: float) -> Any:
        import tritonclient.http as httpclient

        clients = self._thread_clients()
        key = ("http", self._server.http_address, timeout)
        if key not in clients:
            clients[key] = self._remember(
                httpclient.InferenceServerClient(
                    self._server.http_address, connection_timeout=timeout, network_timeout=timeout
                )
            )
        return clients[key]

    def close(self) -> None:
        """Close this view's tritonclient objects (those of every thread)."""
        with self._clients_lock:
            clients, self._all_clients = self._all_clients, []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        self._local = threading.local()

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else float(timeout)

    # ---------------------------------------------------------------- TritonClient
    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        outputs: list[str] | None = None,
        parameters: Parameters | None = None,
        version: int | str | None = None,
        timeout: float | None = None,
        request_id: str = "",
    ) -> Outputs:
        """Run one request and return its outputs, or raise :class:`InferError`."""
        seconds = self._timeout(timeout)
        arrays = {name: _as_triton_array(name, value) for name, value in inputs.items()}
        what = f"inference on model {model!r}"
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            grpc_inputs = []
            for name, array in arrays.items():
                tensor = grpcclient.InferInput(name, list(array.shape), _triton_dtype(name, array))
                tensor.set_data_from_numpy(array)
                grpc_inputs.append(tensor)
            requested = [grpcclient.InferRequestedOutput(name) for name in outputs] if outputs else None
            try:
                result = self._grpc_client().infer(
                    model,
                    grpc_inputs,
                    model_version=_version_string(version),
                    outputs=requested,
                    client_timeout=seconds,
                    parameters=dict(parameters) if parameters else None,
                    request_id=request_id,
                )
            except Exception as error:
                raise _error_from_grpc(error, what, seconds) from None
            names = [tensor.name for tensor in result.get_response().outputs]
        else:
            import tritonclient.http as httpclient

            http_inputs = []
            for name, array in arrays.items():
                tensor = httpclient.InferInput(name, list(array.shape), _triton_dtype(name, array))
                tensor.set_data_from_numpy(array, binary_data=True)
                http_inputs.append(tensor)
            requested = (
                [httpclient.InferRequestedOutput(name, binary_data=True) for name in outputs]
                if outputs
                else None
            )
            try:
                result = self._http_client(seconds).infer(
                    model,
                    http_inputs,
                    model_version=_version_string(version),
                    outputs=requested,
                    parameters=dict(parameters) if parameters else None,
                    request_id=request_id,
                )
            except Exception as error:
                raise _error_from_http(error, what, seconds) from None
            names = [tensor["name"] for tensor in result.get_response().get("outputs", [])]
        return {name: result.as_numpy(name) for name in names}

    def stream(
        self,
        model: str,
        inputs: Inputs,
        *,
        outputs: list[str] | None = None,
        parameters: Parameters | None = None,
        version: int | str | None = None,
        timeout: float | None = None,
        request_id: str = "",
    ) -> Iterator[Outputs]:
        """Run one request on a decoupled model over gRPC streaming (whatever this view's protocol),
        yielding one dict per response until the final one; a flag-only final response yields nothing.

        ``timeout`` bounds the whole stream. Closing the iterator early cancels the request.
        """
        import tritonclient.grpc as grpcclient

        seconds = self._timeout(timeout)
        grpc_inputs = []
        for name, value in inputs.items():
            array = _as_triton_array(name, value)
            tensor = grpcclient.InferInput(name, list(array.shape), _triton_dtype(name, array))
            tensor.set_data_from_numpy(array)
            grpc_inputs.append(tensor)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs] if outputs else None
        return self._stream_responses(
            model,
            grpc_inputs,
            requested,
            dict(parameters) if parameters else None,
            _version_string(version),
            seconds,
            request_id,
        )

    def _stream_responses(
        self,
        model: str,
        grpc_inputs: list[Any],
        requested: list[Any] | None,
        parameters: dict[str, Any] | None,
        version: str,
        seconds: float,
        request_id: str = "",
    ) -> Iterator[Outputs]:
        import tritonclient.grpc as grpcclient

        what = f"stream from model {model!r}"
        events: queue.Queue[tuple[Any, Any]] = queue.Queue()

        def on_response(result: Any, error: Any) -> None:
            events.put((result, error))

        # One client per stream: a tritonclient gRPC client holds at most one stream.
        client = grpcclient.InferenceServerClient(self._server.grpc_url)
        cancel = False
        try:
            try:
                client.start_stream(on_response, stream_timeout=seconds)
                client.async_stream_infer(
                    model,
                    grpc_inputs,
                    model_version=version,
                    outputs=requested,
                    enable_empty_final_response=True,
                    parameters=parameters,
                    request_id=request_id,
                )
            except Exception as error:
                raise _error_from_grpc(error, what, seconds) from None
            deadline = time.monotonic() + seconds
            while True:
                try:
                    # The stream's own deadline fires first; the extra second covers its delivery.
                    result, error = events.get(timeout=max(deadline - time.monotonic(), 0.0) + 1.0)
                except queue.Empty:
                    raise InferTimeout("UNAVAILABLE", f"{what}: no answer within {seconds:g} s") from None
                if error is not None:
                    raise _error_from_grpc(error, what, seconds)
                response = result.get_response()
                final_flag = response.parameters.get(_FINAL_RESPONSE_PARAMETER)
                final = final_flag is None or final_flag.bool_param
                tensors = {tensor.name: result.as_numpy(tensor.name) for tensor in response.outputs}
                if tensors or not final:
                    yield tensors
                if final:
                    return
        except GeneratorExit:
            cancel = True  # the caller stopped iterating: cancel the rest, as a disconnecting client would
            raise
        finally:
            # Otherwise half-close and let the server finish the request (after an error response the
            # model still sends its final flag); the stream deadline bounds the wait.
            with contextlib.suppress(Exception):
                client.stop_stream(cancel_requests=cancel)
            with contextlib.suppress(Exception):
                client.close()

    def is_model_ready(self, model: str, version: int | str | None = None) -> bool:
        """Whether ``model`` (optionally one ``version``) is loaded and ready."""
        seconds = self.timeout
        what = f"readiness of model {model!r}"
        try:
            if self.protocol == "grpc":
                return bool(
                    self._grpc_client().is_model_ready(
                        model, _version_string(version), client_timeout=seconds
                    )
                )
            return bool(self._http_client(seconds).is_model_ready(model, _version_string(version)))
        except Exception as error:
            converted = (_error_from_grpc if self.protocol == "grpc" else _error_from_http)(
                error, what, seconds
            )
            if converted.code in ("NOT_FOUND", "INVALID_ARG", "UNAVAILABLE") and self._server.is_running():
                return False
            raise converted from None

    # ---------------------------------------------------------------- model control
    def load_model(
        self,
        model: str,
        *,
        config: str | None = None,
        files: Mapping[str, bytes] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Load (or reload) ``model``; needs a server started with ``explicit=True``.

        ``config`` (JSON) and ``files`` (``"file:<version>/<name>"`` → content) override the repository's.
        """
        seconds = self._timeout(timeout)
        what = f"loading model {model!r}"
        try:
            if self.protocol == "grpc":
                self._grpc_client().load_model(
                    model, config=config, files=dict(files) if files else None, client_timeout=seconds
                )
            else:
                self._http_client(seconds).load_model(
                    model, config=config, files=dict(files) if files else None
                )
        except Exception as error:
            raise (_error_from_grpc if self.protocol == "grpc" else _error_from_http)(
                error, what, seconds
            ) from None
        self._server.process.remember_stubs()

    def unload_model(
        self, model: str, *, unload_dependents: bool = False, timeout: float | None = None
    ) -> None:
        """Unload ``model`` and wait until the index no longer shows it READY or UNLOADING."""
        seconds = self._timeout(timeout)
        what = f"unloading model {model!r}"
        try:
            if self.protocol == "grpc":
                self._grpc_client().unload_model(
                    model, unload_dependents=unload_dependents, client_timeout=seconds
                )
            else:
                self._http_client(seconds).unload_model(model, unload_dependents=unload_dependents)
        except Exception as error:
            raise (_error_from_grpc if self.protocol == "grpc" else _error_from_http)(
                error, what, seconds
            ) from None
        deadline = time.monotonic() + seconds
        while any(s.name == model and s.state in ("READY", "UNLOADING") for s in self._server.model_states()):
            if time.monotonic() > deadline:
                raise InferTimeout("UNAVAILABLE", f"{what}: still loaded after {seconds:g} s")
            time.sleep(0.1)

    # ---------------------------------------------------------------- server facts, shared by all views
    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self._server.http_address}"

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:<port>``, a gRPC target (tritonclient.grpc's ``url``)."""
        return f"{self._server.host}:{self._server.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:<port>/metrics`` (Prometheus text)."""
        return f"http://{self._server.host}:{self._server.metrics_port}/metrics"

    def model_states(self) -> list[ModelState]:
        """The repository index: each model version with its state and, when not ready, the reason."""
        return self._server.process.model_states(timeout=self.timeout)

    def health(self) -> HealthReport:
        """Models that cannot serve (not READY, or a dead stub), with stub-failure log lines."""
        return self._server.process.health()

    @property
    def log(self) -> str:
        """The server's log so far."""
        return self._server.process.log_text()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.protocol} {self.grpc_url if self.protocol == 'grpc' else self.http_url}>"


# --------------------------------------------------------------------------- the server
class TritonServer(TritonServerClient):
    """A tritonserver on ``repository`` with free ports on 127.0.0.1, usable as a context manager.

    It is itself a client (``protocol``, default gRPC); :meth:`client` gives views with the other
    protocol. ``explicit=True`` starts in explicit model-control mode loading every model (or only
    ``load_models``), which enables :meth:`load_model` / :meth:`unload_model`. Server logs go to
    ``log_file`` and/or ``on_log_line`` and are always kept in :attr:`log`.
    """

    def __init__(
        self,
        repository: str | os.PathLike[str],
        *,
        protocol: ProtocolName | str = "grpc",
        timeout: float = DEFAULT_TIMEOUT,
        explicit: bool = False,
        load_models: Sequence[str] | None = None,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 180.0,
        stop_grace: float = 10.0,
        log_file: str | os.PathLike[str] | None = None,
        on_log_line: Callable[[str], None] | None = None,
        installation: TritonInstallation | None = None,
    ) -> None:
        super().__init__(self, protocol, timeout)
        self.repository = Path(repository)
        self.host = "127.0.0.1"
        self.http_port = 0
        self.grpc_port = 0
        self.metrics_port = 0
        self._process_options: dict[str, Any] = {
            "explicit": explicit,
            "load_models": load_models,
            "log_verbose": log_verbose,
            "extra_args": extra_args,
            "log_file": log_file,
            "on_log_line": on_log_line,
            "installation": installation,
            "stop_grace": stop_grace,
        }
        self.startup_timeout = startup_timeout
        self._process: TritonProcess | None = None
        self._views: weakref.WeakSet[TritonServerClient] = weakref.WeakSet()

    @property
    def http_address(self) -> str:
        """``127.0.0.1:<port>`` of the HTTP endpoint (tritonclient.http's ``url``)."""
        return f"{self.host}:{self.http_port}"

    @property
    def process(self) -> TritonProcess:
        """The running :class:`~pbkit.server.process.TritonProcess`."""
        if self._process is None:
            raise RuntimeError("the server is not started; use `with TritonServer(...)` or call start()")
        return self._process

    def is_running(self) -> bool:
        """Whether tritonserver is up."""
        return self._process is not None and self._process.is_running()

    def start(self, attempts: int = 3) -> TritonServer:
        """Start tritonserver on fresh free ports and wait until it is ready (retrying on a port clash)."""
        if self._process is not None:
            raise RuntimeError("this TritonServer is already started")
        for attempt in range(attempts):
            self.http_port, self.grpc_port, self.metrics_port = find_free_ports(3, self.host)
            process = TritonProcess(
                self.repository,
                http_port=self.http_port,
                grpc_port=self.grpc_port,
                metrics_port=self.metrics_port,
                host=self.host,
                **self._process_options,
            )
            process.start()
            try:
                process.wait_ready(self.startup_timeout)
            except BaseException as error:
                process.stop(grace=2.0)
                clash = isinstance(error, TritonStartError) and "already in use" in process.log_text()
                if clash and attempt + 1 < attempts:
                    continue
                raise
            self._process = process
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> int | None:
        """Stop tritonserver and its stubs (see :meth:`TritonProcess.stop`); returns its exit status."""
        for view in [*list(self._views), self]:
            view.close()
        if self._process is None:
            return None
        return self._process.stop()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
