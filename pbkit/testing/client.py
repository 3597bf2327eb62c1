"""The one client interface shared by the in-process harness and the real server.

Both :class:`pbkit.testing.LocalTriton` and :class:`pbkit.testing.TritonServer` implement
:class:`TritonClient`, so a test written against one runs unchanged against the other.

Conventions
-----------
* Inputs and outputs are ``Mapping[str, numpy.ndarray]``.
* BYTES tensors are numpy object arrays whose elements are :class:`bytes`.
* Every failure is an :class:`InferError` carrying one of :data:`ERROR_CODES`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: The error codes a client can see, named as in ``pb_utils.TritonError``.
ERROR_CODES: tuple[str, ...] = (
    "INVALID_ARG",
    "INTERNAL",
    "NOT_FOUND",
    "UNAVAILABLE",
    "UNSUPPORTED",
    "ALREADY_EXISTS",
    "CANCELLED",
    "UNKNOWN",
)

Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Parameters = Mapping[str, bool | int | str]


class InferError(Exception):
    """An inference failed; ``code`` is one of :data:`ERROR_CODES`, ``message`` the server's text."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}; expected one of {', '.join(ERROR_CODES)}")
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


@runtime_checkable
class TritonClient(Protocol):
    """What tests call, whether the model runs in-process or on a real tritonserver."""

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
        """Run one request and return its outputs, or raise :class:`InferError`.

        ``request_id`` is the request's id as the model sees it (``request_id()``) and error texts show it.
        """
        ...

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
        """Run one request on a decoupled model, yielding one dict per response."""
        ...

    def is_model_ready(self, model: str, version: int | str | None = None) -> bool:
        """Whether ``model`` is loaded and ready."""
        ...
