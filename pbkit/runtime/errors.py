"""Exceptions a model raises to choose the error its client sees."""

from __future__ import annotations


class InvalidArgument(ValueError):
    """Raise from ``validate`` or ``predict`` to answer the request with INVALID_ARG.

    The message is sent as is, so name the tensor or field, what was expected and what came.
    """


class RequestFailed(Exception):
    """A single request failed with a Triton error ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SubmodelError(RuntimeError):
    """A BLS call to a submodel returned an error; the message keeps the submodel's text."""

    def __init__(self, submodel: str, message: str) -> None:
        super().__init__(f"submodel {submodel!r} failed: {message}")
        self.submodel = submodel
        self.submodel_message = message
