"""Typed BLS calls: a declared :class:`~pbkit.spec.submodel.Submodel` becomes a callable.

Every call checks its own response and raises :class:`SubmodelError` naming the submodel
and keeping its error text (also when the call itself cannot be made, or a requested output
is missing). Torch tensors go in and come out through DLPack (zero-copy on GPU); numpy
arrays in give numpy arrays out; BYTES outputs are always numpy object arrays.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..spec.dtypes import DataType, describe_array_dtype
from ..spec.submodel import Submodel
from .errors import SubmodelError

_END = object()
_ENCODE_UTF8 = np.frompyfunc(lambda text: text.encode("utf-8"), 1, 1)


class _Call(NamedTuple):
    request: Any
    as_torch: bool
    requested: list[str]


class BoundSubmodel:
    """A submodel handle bound to the running model's ``pb_utils``."""

    def __init__(self, declaration: Submodel, pb_utils: Any) -> None:
        self.declaration = declaration
        self.name = declaration.name
        self._pb = pb_utils
        self._inputs = {t.name: t for t in declaration.inputs}
        self._output_names = [t.name for t in declaration.outputs]
        self._bytes_outputs = {t.name for t in declaration.outputs if t.dtype is DataType.BYTES}

    def __call__(
        self,
        *,
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, bool | int | str] | None = None,
        timeout_us: int | None = None,
        as_torch: bool | None = None,
        **inputs: Any,
    ) -> dict[str, Any]:
        """Run the submodel once and return its outputs by name."""
        call = self._request(inputs, outputs, parameters, timeout_us, as_torch)
        return self._complete(self._exec(call.request), call)

    async def acall(
        self,
        *,
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, bool | int | str] | None = None,
        timeout_us: int | None = None,
        as_torch: bool | None = None,
        **inputs: Any,
    ) -> dict[str, Any]:
        """Like calling the handle, but awaitable: use ``asyncio.gather`` to fan out."""
        call = self._request(inputs, outputs, parameters, timeout_us, as_torch)
        return self._complete(await self._async_exec(call.request), call)

    def stream(
        self,
        *,
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, bool | int | str] | None = None,
        timeout_us: int | None = None,
        as_torch: bool | None = None,
        **inputs: Any,
    ) -> Iterator[dict[str, Any]]:
        """Call a decoupled submodel, yielding each response's outputs (empty finals skipped)."""
        call = self._request(inputs, outputs, parameters, timeout_us, as_torch)
        for response in self._exec(call.request, decoupled=True):
            result = self._outputs(response, call.as_torch)
            if result:
                yield result

    async def astream(
        self,
        *,
        outputs: Sequence[str] | None = None,
        parameters: Mapping[str, bool | int | str] | None = None,
        timeout_us: int | None = None,
        as_torch: bool | None = None,
        **inputs: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Async form of :meth:`stream`; waiting for each response does not block the event loop."""
        call = self._request(inputs, outputs, parameters, timeout_us, as_torch)
        responses = iter(await self._async_exec(call.request, decoupled=True))
        loop = asyncio.get_running_loop()
        while True:
            response = await loop.run_in_executor(None, next, responses, _END)
            if response is _END:
                return
            result = self._outputs(response, call.as_torch)
            if result:
                yield result

    # ----------------------------------------------------------------- internals
    def _request(
        self,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None,
        parameters: Mapping[str, Any] | None,
        timeout_us: int | None,
        as_torch: bool | None,
    ) -> _Call:
        pb = self._pb
        tensors = []
        any_torch = False
        for name, value in inputs.items():
            if value is None:
                continue
            is_torch = _is_torch(value)
            any_torch |= is_torch
            self._check_input(name, value)
            if is_torch:
                tensors.append(pb.Tensor.from_dlpack(name, value.contiguous()))
            else:
                array = np.asarray(value) if not isinstance(value, np.ndarray) else value
                if array.dtype.kind == "U":
                    array = _encoded(array)
                tensors.append(pb.Tensor(name, np.ascontiguousarray(array)))
        requested = list(outputs) if outputs is not None else list(self._output_names)
        kwargs: dict[str, Any] = {
            "model_name": self.name,
            "inputs": tensors,
            "requested_output_names": requested,
        }
        timeout = self.declaration.timeout_us if timeout_us is None else timeout_us
        if timeout:
            kwargs["timeout"] = int(timeout)
        if parameters:
            kwargs["parameters"] = dict(parameters)
        try:
            request = pb.InferenceRequest(**kwargs)
        except Exception as exc:
            raise SubmodelError(self.name, f"cannot make the request: {type(exc).__name__}: {exc}") from exc
        return _Call(request, any_torch if as_torch is None else as_torch, requested)

    def _exec(self, request: Any, **options: Any) -> Any:
        try:
            return request.exec(**options)
        except Exception as exc:
            raise SubmodelError(self.name, f"{type(exc).__name__}: {exc}") from exc

    async def _async_exec(self, request: Any, **options: Any) -> Any:
        try:
            return await request.async_exec(**options)
        except Exception as exc:
            raise SubmodelError(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _complete(self, response: Any, call: _Call) -> dict[str, Any]:
        """The outputs of a non-decoupled call, which must hold every requested output."""
        result = self._outputs(response, call.as_torch)
        missing = [name for name in call.requested if name not in result]
        if missing:
            raise SubmodelError(self.name, f"the response lacks requested output(s) {missing}")
        return result

    def _check_input(self, name: str, value: Any) -> None:
        if not self._inputs:
            return
        tensor = self._inputs.get(name)
        if tensor is None:
            raise TypeError(f"submodel '{self.name}' has no input '{name}'; inputs are {list(self._inputs)}")
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            return
        if tensor.dtype is DataType.BYTES:
            ok = isinstance(value, np.ndarray) and value.dtype.kind in "OSU"
        elif isinstance(value, np.ndarray):
            ok = value.dtype == tensor.dtype.numpy
        else:
            ok = str(dtype).removeprefix("torch.") == tensor.dtype.numpy.name
        if not ok:
            raise TypeError(
                f"submodel '{self.name}' input '{name}': expected data type {tensor.dtype.value}, "
                f"got {describe_array_dtype(value)}"
            )

    def _outputs(self, response: Any, as_torch: bool) -> dict[str, Any]:
        if response.has_error():
            raise SubmodelError(self.name, response.error().message())
        result: dict[str, Any] = {}
        for tensor in response.output_tensors():
            if as_torch and tensor.name() not in self._bytes_outputs:
                torch = sys.modules.get("torch")
                if torch is None:
                    import torch  # type: ignore[no-redef]
                result[tensor.name()] = torch.from_dlpack(tensor.to_dlpack())
            elif tensor.is_cpu():
                result[tensor.name()] = tensor.as_numpy()
            else:
                raise SubmodelError(
                    self.name,
                    f"output '{tensor.name()}' is on the GPU; call with as_torch=True to receive it",
                )
        return result

    def __repr__(self) -> str:
        return f"<submodel {self.name!r}>"


def _encoded(array: np.ndarray) -> np.ndarray:
    """A unicode array as the object array of UTF-8 bytes that BYTES tensors carry."""
    return np.asarray(_ENCODE_UTF8(array), dtype=object).reshape(array.shape)


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "__dlpack__")


def bind_submodels(model: Any, pb_utils: Any) -> dict[str, BoundSubmodel]:
    """Replace every ``Submodel`` class attribute of ``model`` by a bound handle."""
    bound = {}
    for klass in reversed(type(model).__mro__):
        for attribute, value in vars(klass).items():
            if isinstance(value, Submodel):
                bound[attribute] = BoundSubmodel(value, pb_utils)
    for attribute, handle in bound.items():
        if attribute not in vars(model):
            setattr(model, attribute, handle)
    return bound
