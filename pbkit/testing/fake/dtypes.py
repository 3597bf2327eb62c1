"""Triton data types: the enum values, config and protocol names, and their numpy equivalents."""

from __future__ import annotations

import numpy as np

TYPE_INVALID = 0
TYPE_BOOL = 1
TYPE_UINT8 = 2
TYPE_UINT16 = 3
TYPE_UINT32 = 4
TYPE_UINT64 = 5
TYPE_INT8 = 6
TYPE_INT16 = 7
TYPE_INT32 = 8
TYPE_INT64 = 9
TYPE_FP16 = 10
TYPE_FP32 = 11
TYPE_FP64 = 12
TYPE_BYTES = 13
TYPE_BF16 = 14

#: Protocol names (``TRITONSERVER_DataTypeString``), indexed by the enum value.
PROTOCOL_NAMES: dict[int, str] = {
    TYPE_INVALID: "INVALID",
    TYPE_BOOL: "BOOL",
    TYPE_UINT8: "UINT8",
    TYPE_UINT16: "UINT16",
    TYPE_UINT32: "UINT32",
    TYPE_UINT64: "UINT64",
    TYPE_INT8: "INT8",
    TYPE_INT16: "INT16",
    TYPE_INT32: "INT32",
    TYPE_INT64: "INT64",
    TYPE_FP16: "FP16",
    TYPE_FP32: "FP32",
    TYPE_FP64: "FP64",
    TYPE_BYTES: "BYTES",
    TYPE_BF16: "BF16",
}
PROTOCOL_TO_TYPE: dict[str, int] = {name: value for value, name in PROTOCOL_NAMES.items()}

#: ``model_config.proto`` DataType names (``TYPE_STRING`` is BYTES).
CONFIG_NAMES: dict[int, str] = {
    value: ("TYPE_STRING" if value == TYPE_BYTES else f"TYPE_{name}")
    for value, name in PROTOCOL_NAMES.items()
}
CONFIG_TO_TYPE: dict[str, int] = {name: value for value, name in CONFIG_NAMES.items()}

#: The numpy dtype of each fixed-size Triton type.
NUMPY_DTYPES: dict[int, np.dtype] = {
    TYPE_BOOL: np.dtype(np.bool_),
    TYPE_UINT8: np.dtype(np.uint8),
    TYPE_UINT16: np.dtype(np.uint16),
    TYPE_UINT32: np.dtype(np.uint32),
    TYPE_UINT64: np.dtype(np.uint64),
    TYPE_INT8: np.dtype(np.int8),
    TYPE_INT16: np.dtype(np.int16),
    TYPE_INT32: np.dtype(np.int32),
    TYPE_INT64: np.dtype(np.int64),
    TYPE_FP16: np.dtype(np.float16),
    TYPE_FP32: np.dtype(np.float32),
    TYPE_FP64: np.dtype(np.float64),
}
_BY_NUMPY: dict[np.dtype, int] = {dtype: value for value, dtype in NUMPY_DTYPES.items()}


def triton_type_of(dtype: np.dtype) -> int | None:
    """The Triton type the stub gives a numpy dtype (``object``/``bytes_`` → BYTES), or None."""
    found = _BY_NUMPY.get(dtype)
    if found is not None:
        return found
    if dtype == np.object_ or dtype.type is np.bytes_:
        return TYPE_BYTES
    return None


def byte_size(triton_type: int) -> int:
    """Element size in bytes of a fixed-size type (BF16 is 2)."""
    if triton_type == TYPE_BF16:
        return 2
    return NUMPY_DTYPES[triton_type].itemsize


def bfloat16_dtype() -> np.dtype | None:
    """``ml_dtypes.bfloat16``, the dtype tritonclient uses for BF16 tensors (None if not installed)."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def bf16_for_client(bits: np.ndarray) -> np.ndarray:
    """BF16 values stored as uint16 bit patterns, as tritonclient returns them (``ml_dtypes.bfloat16``;
    float32 when ml_dtypes is missing)."""
    dtype = bfloat16_dtype()
    if dtype is not None:
        return bits.copy().view(dtype)
    return (bits.astype(np.uint32) << 16).view(np.float32)
