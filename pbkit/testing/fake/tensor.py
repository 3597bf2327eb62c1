"""``pb_utils.Tensor``: a named numpy array with the Python backend's dtype rules."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from . import dlpack, dtypes
from .errors import TritonModelException, incompatible_arguments

_DTYPE_SIGNATURE = (
    "Unable to convert function return value to a Python type! The signature was\n"
    "\t(self: c_python_backend_utils.Tensor) -> TRITONSERVER_datatype_enum"
)


def serialize_byte_tensor(tensor: np.ndarray) -> bytes | tuple[()] | None:
    """Length-prefixed (uint32 little-endian) elements in C order; ``()`` when empty; None if not BYTES.

    ``bytes`` elements are kept as they are, anything else becomes ``str(x)`` in UTF-8.
    """
    if tensor.size == 0:
        return ()
    if tensor.dtype == np.object_:
        parts = []
        for item in tensor.reshape(-1, order="C"):
            data = item if type(item) is bytes else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    if tensor.dtype.type is np.bytes_:
        parts = []
        for item in tensor.reshape(-1, order="C").tolist():
            parts.append(struct.pack("<I", len(item)))
            parts.append(item)
        return b"".join(parts)
    return None


def deserialize_bytes_tensor(encoded: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The inverse of :func:`serialize_byte_tensor`: a 1-D object array of ``bytes``."""
    buffer = bytes(encoded) if not isinstance(encoded, bytes) else encoded
    items: list[bytes] = []
    offset = 0
    while offset < len(buffer):
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        items.append(buffer[offset : offset + length])
        offset += length
    array = np.empty(len(items), dtype=np.object_)
    array[:] = items
    return array


def as_bytes_array(array: np.ndarray) -> np.ndarray:
    """A BYTES array as the receiving side of Triton sees it: an object array of ``bytes``, same shape."""
    flat = array.reshape(-1).tolist()
    if array.dtype == np.object_:
        flat = [item if type(item) is bytes else str(item).encode("utf-8") for item in flat]
    out = np.empty(len(flat), dtype=np.object_)
    out[:] = flat
    return out.reshape(array.shape)


class Tensor:
    """``Tensor(name, numpy_array)``, both positional, as the stub's binding declares it."""

    __slots__ = ("__weakref__", "_array", "_name", "_shape", "_triton_type")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if (
            kwargs
            or len(args) != 2
            or not isinstance(args[0], (str, bytes))
            or not isinstance(args[1], np.ndarray)
        ):
            raise incompatible_arguments(
                "c_python_backend_utils.Tensor", "arg0: str, arg1: numpy.ndarray", args, kwargs
            )
        name, array = args
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        triton_type = dtypes.triton_type_of(array.dtype)
        if triton_type is None:
            raise TritonModelException("NumPy dtype is not supported.")
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        if triton_type == dtypes.TYPE_BYTES:
            serialize_byte_tensor(array)  # fails here, like the stub, for elements that cannot be encoded
        self._name = str(name)
        self._array = array
        self._triton_type = triton_type
        self._shape = list(array.shape)

    @classmethod
    def _wrap(cls, name: str, array: np.ndarray, triton_type: int) -> Tensor:
        """A tensor over ``array`` as received from Triton (BF16 arrays hold uint16 bit patterns)."""
        tensor = cls.__new__(cls)
        tensor._name = name
        tensor._array = array
        tensor._triton_type = triton_type
        tensor._shape = list(array.shape)
        return tensor

    def name(self) -> str:
        """The tensor's name."""
        return self._name

    def as_numpy(self) -> np.ndarray:
        """The data as a numpy array (the same array on every call)."""
        if self._triton_type == dtypes.TYPE_BF16:
            raise TritonModelException(
                "Tensor dtype is BF16 and cannot be converted to NumPy. Use to_dlpack() and from_dlpack() instead."
            )
        return self._array

    def triton_dtype(self) -> Any:
        """Broken in the real binding (its return type is not registered): raises the same ``TypeError``."""
        raise TypeError(_DTYPE_SIGNATURE)

    def shape(self) -> list[int]:
        """The dimensions, as a list of ints."""
        return list(self._shape)

    def is_cpu(self) -> bool:
        """Whether the data is in CPU memory (always, in-process)."""
        return True

    def to_dlpack(self) -> Any:
        """A DLPack capsule over the data (not for BYTES tensors)."""
        if self._triton_type == dtypes.TYPE_BYTES:
            raise TritonModelException("DLPack does not have support for string tensors.")
        return dlpack.export_capsule(self._array, self._triton_type)

    def __dlpack__(self, stream: Any = None) -> Any:
        return self.to_dlpack()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (dlpack.DEVICE_CPU, 0)

    @staticmethod
    def from_dlpack(name: str, tensor: Any) -> Tensor:
        """A tensor from a DLPack capsule or an object with ``__dlpack__`` (C-contiguous, CPU); data is copied."""
        if not isinstance(name, (str, bytes)):
            raise TypeError(
                "from_dlpack(): incompatible function arguments. The following argument types are supported:\n"
                "    1. (arg0: str, arg1: object) -> c_python_backend_utils.Tensor"
            )
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        array, triton_type = dlpack.read_dlpack(tensor)
        return Tensor._wrap(name, array, triton_type)

    def __repr__(self) -> str:
        return f"<Tensor {self._name!r} {dtypes.PROTOCOL_NAMES[self._triton_type]} {self._shape}>"


def triton_type(tensor: Tensor) -> int:
    """The tensor's Triton type (what ``triton_dtype()`` would return if the binding worked)."""
    return tensor._triton_type


def raw_array(tensor: Tensor) -> np.ndarray:
    """The stored array, BF16 included (as uint16 bits)."""
    return tensor._array


def received(tensor: Tensor) -> Tensor:
    """The tensor as the other side of Triton sees it: a fresh copy, BYTES as ``bytes`` objects."""
    array = tensor._array
    if tensor._triton_type == dtypes.TYPE_BYTES:
        copy = as_bytes_array(array)
    else:
        copy = array.copy()
    return Tensor._wrap(tensor._name, copy, tensor._triton_type)
