"""The ``TritonPythonModel`` behind every generated ``model.py``.

A generated ``model.py`` is only::

    class TritonPythonModel(PbkitModel):
        model_class = MyModel

This base turns Triton's ``initialize``/``execute``/``finalize`` calls into the user's
``setup``/``predict``/``teardown`` and answers every request with exactly one response.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..spec.declare import spec_of
from .batching import BatchingLoop, Request, RequestFailed, Result, failure_from_exception
from .bls import bind_submodels
from .context import SetupContext


class PbkitModel:
    """Adapts a declared pbkit model class to the Python backend's model interface."""

    model_class: ClassVar[type]

    def initialize(self, args: dict[str, str]) -> None:
        self._pb = importlib.import_module("triton_python_backend_utils")
        spec = spec_of(self.model_class)
        self.context = SetupContext.from_args(args, spec)
        self.model = self.model_class()
        bind_submodels(self.model, self._pb)
        setup = getattr(self.model, "setup", None)
        if setup is not None:
            setup(self.context)
        self.loop = BatchingLoop(spec, self.model.predict, getattr(self.model, "validate", None))
        self._decoupled = spec.decoupled
        codes = self._pb.TritonError
        self._codes = {name: getattr(codes, name) for name in ("INVALID_ARG", "INTERNAL", "UNAVAILABLE")}

    def execute(self, requests: Sequence[Any]) -> Any:
        try:
            return self._execute(requests)
        except Exception as exc:  # a fault in the loop itself must still answer every request
            if self._decoupled:
                raise
            return [self._response(exc) for _ in requests]

    def _execute(self, requests: Sequence[Any]) -> Any:
        batch = [self._request(r) for r in requests]
        if self._decoupled:
            if self.loop.is_async:
                return self._stream_async(requests, batch)
            self._stream(requests, batch)
            return None
        if self.loop.is_async:
            return self._execute_async(batch)
        return [self._response(result) for result in self.loop.run(batch)]

    async def _execute_async(self, batch: list[Request]) -> list[Any]:
        return [self._response(result) for result in await self.loop.run_async(batch)]

    def finalize(self) -> None:
        teardown = getattr(getattr(self, "model", None), "teardown", None)
        if teardown is not None:
            teardown()

    # ----------------------------------------------------------------- decoupled
    def _stream(self, requests: Sequence[Any], batch: list[Request]) -> None:
        senders = [r.get_response_sender() for r in requests]
        live = self._start_stream(batch, senders)
        for members in self.loop.group([batch[i] for i in live]):
            indices = [live[m] for m in members]
            for step in self.loop.stream_group([batch[i] for i in indices]):
                self._send_step(step, indices, senders, requests)
            self._finish([senders[i] for i in indices])

    async def _stream_async(self, requests: Sequence[Any], batch: list[Request]) -> None:
        senders = [r.get_response_sender() for r in requests]
        live = self._start_stream(batch, senders)
        for members in self.loop.group([batch[i] for i in live]):
            indices = [live[m] for m in members]
            async for step in self.loop.astream_group([batch[i] for i in indices]):
                self._send_step(step, indices, senders, requests)
            self._finish([senders[i] for i in indices])

    def _start_stream(self, batch: list[Request], senders: list[Any]) -> list[int]:
        live = []
        for index, request in enumerate(batch):
            failure = self.loop.check_request(request)
            if failure is None:
                live.append(index)
            else:
                senders[index].send(
                    self._response(failure), flags=self._pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                )
        return live

    def _send_step(
        self, step: list[Any], indices: list[int], senders: list[Any], requests: Sequence[Any]
    ) -> None:
        for position, result in zip(indices, step, strict=True):
            if result is None or senders[position] is None:
                continue
            if isinstance(result, RequestFailed):
                senders[position].send(
                    self._response(result), flags=self._pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                )
                senders[position] = None
            elif requests[position].is_cancelled():
                senders[position].send(flags=self._pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                senders[position] = None
            else:
                senders[position].send(self._response(result))

    def _finish(self, senders: list[Any]) -> None:
        for sender in senders:
            if sender is not None:
                sender.send(flags=self._pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    # ----------------------------------------------------------------- conversion
    def _request(self, request: Any) -> Request:
        inputs = {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}
        # Triton lists every output when the client names none: treat "all of them" as no filter.
        requested = request.requested_output_names()
        if requested and set(requested) == self.loop.all_outputs:
            requested = None
        return Request(
            inputs=inputs,
            requested_outputs=list(requested) if requested else None,
            parameters=lambda: json.loads(request.parameters() or "{}"),
            request_id=request.request_id,  # read only if predict asks for it
        )

    def _response(self, result: Result | BaseException) -> Any:
        pb = self._pb
        if isinstance(result, BaseException):
            result = failure_from_exception(result)
        if isinstance(result, RequestFailed):
            code = self._codes.get(result.code, self._codes["INTERNAL"])
            return pb.InferenceResponse(error=pb.TritonError(result.message, code))
        return pb.InferenceResponse(
            output_tensors=[self._tensor(name, value) for name, value in result.items()]
        )

    def _tensor(self, name: str, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return self._pb.Tensor(name, value)
        device = getattr(value, "device", None)
        if getattr(device, "type", "cpu") != "cpu":
            return self._pb.Tensor.from_dlpack(name, value.contiguous())
        return self._pb.Tensor(name, value.detach().numpy())
