"""Triton data types and their numpy counterparts.

Every Triton type that numpy can hold is supported, plus BYTES (``TYPE_STRING``), whose
numpy form is an object array of :class:`bytes`.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np


class DataType(enum.Enum):
    """A Triton tensor data type; the value is the client-side name (``"FP32"``)."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def config_name(self) -> str:
        """The name used in ``config.pbtxt`` (``TYPE_FP32``; BYTES is ``TYPE_STRING``)."""
        return "TYPE_STRING" if self is DataType.BYTES else f"TYPE_{self.value}"

    @property
    def numpy(self) -> np.dtype[Any]:
        """The numpy dtype holding this type (``object`` for BYTES)."""
        return _NUMPY[self]

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_config_name(cls, name: str) -> DataType:
        """Parse ``TYPE_FP32`` style names."""
        if name == "TYPE_STRING":
            return cls.BYTES
        if name.startswith("TYPE_"):
            try:
                return cls(name[len("TYPE_") :])
            except ValueError:
                pass
        raise ValueError(f"unsupported data type {name!r}; expected one of {', '.join(_config_names())}")

    @classmethod
    def from_numpy(cls, dtype: Any) -> DataType:
        """The Triton type of a numpy dtype; ``object``, ``bytes_`` and ``str_`` map to BYTES."""
        dt = np.dtype(dtype)
        if dt.kind in "OSU":
            return cls.BYTES
        for member, candidate in _NUMPY.items():
            if candidate == dt:
                return member
        raise ValueError(f"numpy dtype {dt} has no Triton equivalent")

    @classmethod
    def parse(cls, value: Any) -> DataType:
        """Accept a DataType, ``"FP32"``, ``"TYPE_FP32"``, a numpy dtype or a Python type."""
        if isinstance(value, DataType):
            return value
        if isinstance(value, str):
            upper = value.upper()
            if upper in cls.__members__:
                return cls[upper]
            if upper in ("STRING", "STR"):
                return cls.BYTES
            if upper.startswith("TYPE_"):
                return cls.from_config_name(upper)
            raise ValueError(f"unknown data type {value!r}; expected one of {', '.join(cls.__members__)}")
        if value in (bytes, str, object):
            return cls.BYTES
        if value is bool:
            return cls.BOOL
        if value is int:
            return cls.INT64
        if value is float:
            return cls.FP32
        try:
            return cls.from_numpy(value)
        except TypeError as exc:
            raise ValueError(f"cannot interpret {value!r} as a Triton data type") from exc


_NUMPY: dict[DataType, np.dtype[Any]] = {
    DataType.BOOL: np.dtype(np.bool_),
    DataType.UINT8: np.dtype(np.uint8),
    DataType.UINT16: np.dtype(np.uint16),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
    DataType.INT8: np.dtype(np.int8),
    DataType.INT16: np.dtype(np.int16),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.FP16: np.dtype(np.float16),
    DataType.FP32: np.dtype(np.float32),
    DataType.FP64: np.dtype(np.float64),
    DataType.BYTES: np.dtype(np.object_),
}


def _config_names() -> list[str]:
    return [member.config_name for member in DataType]


def describe_array_dtype(array: Any) -> str:
    """A short name for the dtype of a numpy array or torch tensor, for error messages."""
    dtype = getattr(array, "dtype", None)
    if dtype is None:
        return type(array).__name__
    try:
        return DataType.from_numpy(dtype).value
    except (ValueError, TypeError):
        return str(dtype)
