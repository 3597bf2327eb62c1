"""A faithful in-process fake of Triton's ``triton_python_backend_utils`` (``pb_utils``).

:func:`install` registers it as ``triton_python_backend_utils`` in ``sys.modules`` (``LocalTriton``
does so itself), after which a model's ``import triton_python_backend_utils as pb_utils`` gets it.
The classes are importable from here for unit tests that build requests by hand::

    from pbkit.testing.fake import Tensor, InferenceResponse, TritonError
"""

from __future__ import annotations

import sys
from types import ModuleType

from . import context, pb_utils
from .errors import ErrorCode, TritonError, TritonModelException
from .messages import (
    TRITONSERVER_MEMORY_CPU,
    TRITONSERVER_MEMORY_GPU,
    InferenceRequest,
    InferenceResponse,
    InferenceResponseSender,
    InferenceTrace,
    MemoryType,
    PreferredMemory,
    ResponseIterator,
)
from .metrics import Logger, LogLevel, Metric, MetricFamily, MetricKind, MetricRegistry
from .pb_utils import ModelConfig
from .tensor import Tensor

MODULE_NAME = "triton_python_backend_utils"

__all__ = [
    "MODULE_NAME",
    "TRITONSERVER_MEMORY_CPU",
    "TRITONSERVER_MEMORY_GPU",
    "ErrorCode",
    "InferenceRequest",
    "InferenceResponse",
    "InferenceResponseSender",
    "InferenceTrace",
    "LogLevel",
    "Logger",
    "MemoryType",
    "Metric",
    "MetricFamily",
    "MetricKind",
    "MetricRegistry",
    "ModelConfig",
    "PreferredMemory",
    "ResponseIterator",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "install",
    "pb_utils",
]


def install() -> ModuleType:
    """Make ``import triton_python_backend_utils`` return the fake module; returns it."""
    context.inherit_in_threads()
    if sys.modules.get(MODULE_NAME) is not pb_utils:
        pb_utils.__name__ = MODULE_NAME  # as in messages such as "cannot import name ... from ..."
        sys.modules[MODULE_NAME] = pb_utils
    return pb_utils
