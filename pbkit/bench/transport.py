"""The two wire protocols of the load generator, behind one small async interface (tritonclient aio)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GrpcTransport", "HttpTransport", "ModelStats", "Transport", "TransportError", "open_transport"]

DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}


class TransportError(Exception):
    """A request failed on the server or on the way; ``status`` is the server's error code when known."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ModelStats:
    """Cumulative server-side statistics of one model version (``/v2/models/stats``)."""

    inference_count: int = 0
    execution_count: int = 0
    success_count: int = 0
    fail_count: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    batch_executions: dict[int, int] = field(default_factory=dict)
    """Executions per batch size (batch size -> count)."""
    batch_infer_ns: dict[int, int] = field(default_factory=dict)
    """Total compute-infer time per batch size."""

    def minus(self, earlier: ModelStats) -> ModelStats:
        """The statistics of what happened between ``earlier`` and this snapshot."""
        return ModelStats(
            inference_count=self.inference_count - earlier.inference_count,
            execution_count=self.execution_count - earlier.execution_count,
            success_count=self.success_count - earlier.success_count,
            fail_count=self.fail_count - earlier.fail_count,
            queue_ns=self.queue_ns - earlier.queue_ns,
            compute_input_ns=self.compute_input_ns - earlier.compute_input_ns,
            compute_infer_ns=self.compute_infer_ns - earlier.compute_infer_ns,
            compute_output_ns=self.compute_output_ns - earlier.compute_output_ns,
            batch_executions=_minus(self.batch_executions, earlier.batch_executions),
            batch_infer_ns=_minus(self.batch_infer_ns, earlier.batch_infer_ns),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary: counts, mean times per request in ms, and the batch sizes executed."""
        requests = max(self.success_count, 1)
        executions = max(self.execution_count, 1)
        return {
            "requests": self.success_count,
            "failed": self.fail_count,
            "executions": self.execution_count,
            "rows": self.inference_count,
            "mean_batch_rows": self.inference_count / executions if self.execution_count else 0.0,
            "queue_ms_per_request": self.queue_ns / requests / 1e6,
            "compute_input_ms_per_request": self.compute_input_ns / requests / 1e6,
            "compute_infer_ms_per_request": self.compute_infer_ns / requests / 1e6,
            "compute_output_ms_per_request": self.compute_output_ns / requests / 1e6,
            "batch_executions": {str(size): count for size, count in sorted(self.batch_executions.items())},
            "batch_infer_ms": {str(size): ns / 1e6 for size, ns in sorted(self.batch_infer_ns.items())},
        }


def _minus(later: Mapping[int, int], earlier: Mapping[int, int]) -> dict[int, int]:
    delta = {key: value - earlier.get(key, 0) for key, value in later.items()}
    return {key: value for key, value in delta.items() if value}


def _stats_from_json(entry: Mapping[str, Any]) -> ModelStats:
    stats = entry.get("inference_stats", {})

    def count(name: str) -> int:
        return int(stats.get(name, {}).get("count", 0) or 0)

    def ns(name: str) -> int:
        return int(stats.get(name, {}).get("ns", 0) or 0)

    executions: dict[int, int] = {}
    infer_ns: dict[int, int] = {}
    for batch in entry.get("batch_stats", []) or []:
        size = int(batch.get("batch_size", 0))
        infer = batch.get("compute_infer", {})
        executions[size] = int(infer.get("count", 0) or 0)
        infer_ns[size] = int(infer.get("ns", 0) or 0)
    return ModelStats(
        inference_count=int(entry.get("inference_count", 0) or 0),
        execution_count=int(entry.get("execution_count", 0) or 0),
        success_count=count("success"),
        fail_count=count("fail"),
        queue_ns=ns("queue"),
        compute_input_ns=ns("compute_input"),
        compute_infer_ns=ns("compute_infer"),
        compute_output_ns=ns("compute_output"),
        batch_executions=executions,
        batch_infer_ns=infer_ns,
    )


class Transport(abc.ABC):
    """An async client for one server; ``prepare`` builds a request once so it can be sent many times."""

    protocol: str

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    @abc.abstractmethod
    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        """The model's config in its JSON form."""

    @abc.abstractmethod
    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        """Encode one input set for repeated sending."""

    @abc.abstractmethod
    async def infer(
        self, model: str, prepared: Any, request_id: str, version: str = ""
    ) -> tuple[dict[str, np.ndarray], str]:
        """Send one request; return its outputs and the response's request id, or raise TransportError."""

    @abc.abstractmethod
    async def _statistics_json(self) -> list[Mapping[str, Any]]: ...

    async def statistics(self) -> dict[str, ModelStats]:
        """Server-side statistics of every model version, keyed ``name`` (``name:version`` if not version 1)."""
        result: dict[str, ModelStats] = {}
        for entry in await self._statistics_json():
            version = str(entry.get("version", ""))
            key = str(entry.get("name", "")) + ("" if version in ("", "1") else f":{version}")
            result[key] = _stats_from_json(entry)
        return result

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


def _exception_message(exc: Exception) -> tuple[str, str | None]:
    message = getattr(exc, "message", None)
    status = getattr(exc, "status", None)
    text = message() if callable(message) else str(exc)
    code = status() if callable(status) else None
    return str(text), (str(code) if code is not None else None)


class GrpcTransport(Transport):
    """gRPC through ``tritonclient.grpc.aio``."""

    protocol = "grpc"

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(url, timeout)
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as grpc_aio

        self._module = grpcclient
        self._client = grpc_aio.InferenceServerClient(url)

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        try:
            return dict(await self._client.get_model_config(model, version, as_json=True))
        except Exception as exc:
            raise TransportError(*_exception_message(exc)) from exc

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        from tritonclient.utils import np_to_triton_dtype

        prepared = []
        for name, array in inputs.items():
            tensor = self._module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            prepared.append(tensor)
        return prepared

    async def infer(
        self, model: str, prepared: Any, request_id: str, version: str = ""
    ) -> tuple[dict[str, np.ndarray], str]:
        try:
            result = await self._client.infer(
                model, prepared, model_version=version, request_id=request_id, client_timeout=self.timeout
            )
        except Exception as exc:
            raise TransportError(*_exception_message(exc)) from exc
        response = result.get_response()
        return {output.name: result.as_numpy(output.name) for output in response.outputs}, response.id

    async def _statistics_json(self) -> list[Mapping[str, Any]]:
        stats = await self._client.get_inference_statistics(as_json=True)
        return list(stats.get("model_stats", []))

    async def close(self) -> None:
        await self._client.close()


class HttpTransport(Transport):
    """HTTP/REST through ``tritonclient.http.aio`` (binary tensor data)."""

    protocol = "http"

    def __init__(self, url: str, timeout: float, connections: int = 100) -> None:
        super().__init__(url, timeout)
        import tritonclient.http as httpclient
        import tritonclient.http.aio as http_aio

        self._module = httpclient
        self._client = http_aio.InferenceServerClient(url, conn_limit=connections, conn_timeout=timeout)

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        try:
            return dict(await self._client.get_model_config(model, version))
        except Exception as exc:
            raise TransportError(*_exception_message(exc)) from exc

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        from tritonclient.utils import np_to_triton_dtype

        prepared = []
        for name, array in inputs.items():
            tensor = self._module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            prepared.append(tensor)
        return prepared

    async def infer(
        self, model: str, prepared: Any, request_id: str, version: str = ""
    ) -> tuple[dict[str, np.ndarray], str]:
        try:
            result = await self._client.infer(model, prepared, model_version=version, request_id=request_id)
        except Exception as exc:
            raise TransportError(*_exception_message(exc)) from exc
        response = result.get_response()
        outputs = {entry["name"]: result.as_numpy(entry["name"]) for entry in response.get("outputs", [])}
        return outputs, str(response.get("id", ""))

    async def _statistics_json(self) -> list[Mapping[str, Any]]:
        stats = await self._client.get_inference_statistics()
        return list(stats.get("model_stats", []))

    async def close(self) -> None:
        await self._client.close()


def open_transport(
    protocol: str, url: str | None = None, *, timeout: float = 60.0, connections: int = 100
) -> Transport:
    """A transport for ``protocol`` (``grpc`` or ``http``) to ``url`` (default: the local server's port)."""
    if protocol not in DEFAULT_URLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected grpc or http")
    address = url or DEFAULT_URLS[protocol]
    for scheme in ("http://", "https://", "grpc://"):
        address = address.removeprefix(scheme)
    if protocol == "grpc":
        return GrpcTransport(address, timeout)
    return HttpTransport(address, timeout, connections)
