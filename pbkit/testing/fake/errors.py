"""``TritonError``, its codes, ``TritonModelException`` and the binding-style argument errors."""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.IntEnum):
    """``TRITONSERVER_Error_Code`` (the stub's ``TritonError.__ErrorCode``)."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7


class TritonModelException(Exception):
    """Raised by the Python backend's API for misuse; ``str(exc)`` is the message."""


class TritonError:
    """An error a model returns in an ``InferenceResponse``: ``TritonError(message, code=INTERNAL)``."""

    UNKNOWN = ErrorCode.UNKNOWN
    INTERNAL = ErrorCode.INTERNAL
    NOT_FOUND = ErrorCode.NOT_FOUND
    INVALID_ARG = ErrorCode.INVALID_ARG
    UNAVAILABLE = ErrorCode.UNAVAILABLE
    UNSUPPORTED = ErrorCode.UNSUPPORTED
    ALREADY_EXISTS = ErrorCode.ALREADY_EXISTS
    CANCELLED = ErrorCode.CANCELLED

    __slots__ = ("_code", "_message")

    def __init__(self, message: str, code: ErrorCode = ErrorCode.INTERNAL) -> None:
        if not isinstance(message, str) or not isinstance(code, ErrorCode):
            raise incompatible_arguments(
                "c_python_backend_utils.TritonError",
                "message: str, code: c_python_backend_utils.TritonError.__ErrorCode = <__ErrorCode.INTERNAL: 1>",
                (message, code) if code is not ErrorCode.INTERNAL else (message,),
                {},
            )
        self._message = message
        self._code = code

    def code(self) -> ErrorCode:
        """The error code."""
        return self._code

    def message(self) -> str:
        """The error message."""
        return self._message

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, {self._code.name})"


def incompatible_arguments(
    qualified: str, signature: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> TypeError:
    """The ``TypeError`` pybind11 raises when a constructor's arguments do not convert."""
    invoked = ", ".join(repr(a) for a in args)
    if kwargs:
        kw = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        invoked = f"{invoked}; kwargs: {kw}" if invoked else f"kwargs: {kw}"
    return TypeError(
        "__init__(): incompatible constructor arguments. The following argument types are supported:\n"
        f"    1. {qualified}({signature})\n\nInvoked with: {invoked}"
    )
