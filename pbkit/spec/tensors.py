"""Tensor declarations: :class:`Input`, :class:`Output` and annotation types like ``FP32[4]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from .dtypes import DataType
from .names import check_tensor_name

Dims = tuple[int, ...]


def normalize_dims(dims: Any, *, what: str) -> Dims:
    """Turn an int or a sequence of ints into a dims tuple; -1 means variable."""
    if isinstance(dims, (int, np.integer)):
        dims = (int(dims),)
    try:
        result = tuple(int(d) for d in dims)
    except TypeError as exc:
        raise ValueError(f"{what}: dims must be a sequence of ints, got {dims!r}") from exc
    for d in result:
        if d < -1 or d == 0:
            raise ValueError(f"{what}: each dim must be positive or -1 (variable), got {list(result)}")
    return result


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor with a data type and dims (without the batch dimension)."""

    name: str
    dtype: DataType
    dims: Dims
    description: str = ""

    def __post_init__(self) -> None:
        check_tensor_name(self.name)
        object.__setattr__(self, "dtype", DataType.parse(self.dtype))
        object.__setattr__(self, "dims", normalize_dims(self.dims, what=f"tensor {self.name!r}"))

    def dims_match(self, shape: tuple[int, ...]) -> bool:
        """Whether ``shape`` (without the batch dimension) fits the declared dims."""
        return len(shape) == len(self.dims) and all(
            d in (-1, s) for d, s in zip(self.dims, shape, strict=True)
        )

    def describe(self) -> str:
        return f"{self.dtype.value}{list(self.dims)}"


@dataclass(frozen=True)
class Input(TensorSpec):
    """A model input.

    ``optional`` inputs may be left out of a request. A ``default`` (an array of shape
    ``dims``, without the batch dimension) fills a missing optional input for every batch row,
    so requests with and without it are batched together. ``pad_value`` lets requests whose
    variable (-1) dims differ be batched together, padded to the longest (the config then
    says ``allow_ragged_batch: true`` so Triton's batcher groups them); without it such
    requests are grouped by shape.
    """

    optional: bool = False
    default: Any = field(default=None, compare=False)
    pad_value: Any = None
    allow_ragged_batch: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pad_value is not None:
            # Triton's batcher groups requests whose variable dims differ only for ragged inputs.
            object.__setattr__(self, "allow_ragged_batch", True)
        if self.default is not None:
            if not self.optional:
                object.__setattr__(self, "optional", True)
            default = np.asarray(self.default, dtype=self.dtype.numpy)
            if self.dtype is DataType.BYTES:
                default = np.vectorize(_to_bytes, otypes=[object])(default) if default.size else default
            if any(d != -1 for d in self.dims) and not self.dims_match(default.shape):
                raise ValueError(
                    f"input {self.name!r}: default has shape {list(default.shape)}, expected dims {list(self.dims)}"
                )
            default.setflags(write=False)
            object.__setattr__(self, "default", default)


@dataclass(frozen=True)
class Output(TensorSpec):
    """A model output."""


def _to_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


@dataclass(frozen=True)
class TensorType:
    """The metadata behind annotation types such as ``FP32[4]``."""

    dtype: DataType
    dims: Dims


class _TensorTypeFactory:
    """``FP32[4, -1]`` becomes ``Annotated[np.ndarray, TensorType(FP32, (4, -1))]``."""

    def __init__(self, dtype: DataType) -> None:
        self.dtype = dtype

    def __getitem__(self, dims: Any) -> Any:
        if dims == () or dims is Ellipsis:
            dims = ()
        normalized = normalize_dims(
            dims if isinstance(dims, tuple) else (dims,), what=f"{self.dtype.value}[...]"
        )
        return Annotated[np.ndarray, TensorType(self.dtype, normalized)]

    def __repr__(self) -> str:
        return f"pbkit.{self.dtype.value}"


BOOL = _TensorTypeFactory(DataType.BOOL)
UINT8 = _TensorTypeFactory(DataType.UINT8)
UINT16 = _TensorTypeFactory(DataType.UINT16)
UINT32 = _TensorTypeFactory(DataType.UINT32)
UINT64 = _TensorTypeFactory(DataType.UINT64)
INT8 = _TensorTypeFactory(DataType.INT8)
INT16 = _TensorTypeFactory(DataType.INT16)
INT32 = _TensorTypeFactory(DataType.INT32)
INT64 = _TensorTypeFactory(DataType.INT64)
FP16 = _TensorTypeFactory(DataType.FP16)
FP32 = _TensorTypeFactory(DataType.FP32)
FP64 = _TensorTypeFactory(DataType.FP64)
BYTES = _TensorTypeFactory(DataType.BYTES)
