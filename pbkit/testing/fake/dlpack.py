"""DLPack capsules made and read with ctypes, so every Triton type (BOOL and BF16 included) round-trips.

numpy alone cannot export BOOL or BF16 through DLPack; the Python backend can, and frameworks such as
torch rely on it, so this module implements the producer and the consumer side of the protocol.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from . import dtypes
from .errors import TritonModelException

# DLDeviceType
DEVICE_CPU = 1
DEVICE_CUDA = 2
DEVICE_CUDA_HOST = 3

# DLDataTypeCode
_INT, _UINT, _FLOAT, _BFLOAT, _BOOL = 0, 1, 2, 4, 6


class _Device(ctypes.Structure):
    _fields_ = (("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32))


class _DataType(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16))


class _Tensor(ctypes.Structure):
    _fields_ = (
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    )


class _ManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ManagedTensor))
_ManagedTensor._fields_ = (
    ("dl_tensor", _Tensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", _Deleter),
)

_CAPSULE_NAME = b"dltensor"
_USED_CAPSULE_NAME = b"used_dltensor"

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = (ctypes.py_object, ctypes.c_char_p)
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = (ctypes.py_object, ctypes.c_char_p)
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = (ctypes.py_object, ctypes.c_char_p)

# The capsule destructor receives the dying capsule: use raw pointers only.
_is_valid_raw = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_get_pointer_raw = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)
_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

# Exported tensors stay alive (struct, shape buffer, numpy array) until their deleter runs.
_exported: dict[int, tuple[Any, ...]] = {}
_exported_lock = threading.Lock()


@_Deleter
def _delete_managed(managed: Any) -> None:
    address = ctypes.cast(managed, ctypes.c_void_p).value
    with _exported_lock:
        _exported.pop(address or 0, None)


@_CapsuleDestructor
def _destroy_capsule(capsule: int) -> None:
    # A capsule nobody consumed still owns its tensor; a consumed one was renamed "used_dltensor".
    if _is_valid_raw(capsule, _CAPSULE_NAME):
        address = _get_pointer_raw(capsule, _CAPSULE_NAME)
        with _exported_lock:
            _exported.pop(address or 0, None)


def _code_and_bits(triton_type: int) -> tuple[int, int]:
    if triton_type == dtypes.TYPE_BOOL:
        return _BOOL, 8
    if triton_type == dtypes.TYPE_BF16:
        return _BFLOAT, 16
    dtype = dtypes.NUMPY_DTYPES[triton_type]
    code = {"i": _INT, "u": _UINT, "f": _FLOAT}[dtype.kind]
    return code, dtype.itemsize * 8


def export_capsule(array: np.ndarray, triton_type: int) -> Any:
    """A ``"dltensor"`` capsule over ``array`` (C-contiguous, CPU); the array lives as long as the tensor."""
    array = np.ascontiguousarray(array)
    managed = _ManagedTensor()
    shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
    code, bits = _code_and_bits(triton_type)
    managed.dl_tensor.data = array.ctypes.data if array.size else None
    managed.dl_tensor.device = _Device(DEVICE_CPU, 0)
    managed.dl_tensor.ndim = array.ndim
    managed.dl_tensor.dtype = _DataType(code, bits, 1)
    managed.dl_tensor.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    managed.dl_tensor.strides = None
    managed.dl_tensor.byte_offset = 0
    managed.deleter = _delete_managed
    address = ctypes.addressof(managed)
    with _exported_lock:
        _exported[address] = (managed, shape, array)
    return _api.PyCapsule_New(address, _CAPSULE_NAME, ctypes.cast(_destroy_capsule, ctypes.c_void_p))


def _triton_type_of(code: int, bits: int, lanes: int) -> int:
    if lanes != 1:
        return dtypes.TYPE_INVALID
    table = {
        (_FLOAT, 16): dtypes.TYPE_FP16,
        (_FLOAT, 32): dtypes.TYPE_FP32,
        (_FLOAT, 64): dtypes.TYPE_FP64,
        (_INT, 8): dtypes.TYPE_INT8,
        (_INT, 16): dtypes.TYPE_INT16,
        (_INT, 32): dtypes.TYPE_INT32,
        (_INT, 64): dtypes.TYPE_INT64,
        (_UINT, 8): dtypes.TYPE_UINT8,
        (_UINT, 16): dtypes.TYPE_UINT16,
        (_UINT, 32): dtypes.TYPE_UINT32,
        (_UINT, 64): dtypes.TYPE_UINT64,
        (_BOOL, 8): dtypes.TYPE_BOOL,
    }
    if code == _BFLOAT:
        if bits != 16:
            raise TritonModelException(f"Expected BF16 tensor to have 16 bits, but had: {bits}")
        return dtypes.TYPE_BF16
    return table.get((code, bits), dtypes.TYPE_INVALID)


def _storage_dtype(triton_type: int) -> np.dtype:
    if triton_type == dtypes.TYPE_BF16:
        return np.dtype(np.uint16)
    return dtypes.NUMPY_DTYPES[triton_type]


def read_capsule(capsule: Any) -> tuple[np.ndarray, int]:
    """Copy a ``"dltensor"`` capsule's data into a new array; returns it (BF16 as uint16 bits) and its type."""
    if not _api.PyCapsule_IsValid(capsule, _CAPSULE_NAME):
        raise TritonModelException("Provided DLPack capsule is not valid or has already been consumed.")
    address = _api.PyCapsule_GetPointer(capsule, _CAPSULE_NAME)
    managed = _ManagedTensor.from_address(address)
    tensor = managed.dl_tensor
    ndim = tensor.ndim
    shape = [tensor.shape[i] for i in range(ndim)]
    if tensor.strides:
        expected = 1
        for i in range(1, ndim + 1):
            if shape[ndim - i] != 1:
                if tensor.strides[ndim - i] != expected:
                    raise TritonModelException(
                        "DLPack tensor is not contiguous. Only contiguous DLPack tensors that are stored in "
                        "C-Order are supported."
                    )
                expected *= shape[ndim - i]
    device = tensor.device.device_type
    if device == DEVICE_CUDA:
        raise TritonModelException(
            "DLPack capsule passed pointer to memory allocated on GPU device,           when GPU is not available"
        )
    if device not in (DEVICE_CPU, DEVICE_CUDA_HOST):
        raise TritonModelException(f"DLDevice type {device} is not support by Python backend.")
    triton_type = _triton_type_of(tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes)
    if triton_type == dtypes.TYPE_INVALID:
        raise TritonModelException(
            f"DLPack data type (code {tensor.dtype.code}, {tensor.dtype.bits} bits, {tensor.dtype.lanes} lanes) "
            "has no Triton equivalent."
        )
    storage = _storage_dtype(triton_type)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    nbytes = count * storage.itemsize
    if nbytes:
        raw = ctypes.string_at((tensor.data or 0) + tensor.byte_offset, nbytes)
        array = np.frombuffer(bytearray(raw), dtype=storage).reshape(shape)
    else:
        array = np.zeros(shape, dtype=storage)
    _api.PyCapsule_SetName(capsule, _USED_CAPSULE_NAME)
    if managed.deleter:
        managed.deleter(ctypes.pointer(managed))
    return array, triton_type


def read_dlpack(obj: Any) -> tuple[np.ndarray, int]:
    """What ``Tensor.from_dlpack`` accepts: a capsule, or an object with ``__dlpack__``/``__dlpack_device__``."""
    if type(obj).__name__ == "PyCapsule":
        return read_capsule(obj)
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        raise TritonModelException(
            "Provided tensor is not supported. Tensor must be a DLPack capsule         or have `__dlpack__` "
            "and `__dlpack_device__` attributes"
        )
    device_type, _device_id = obj.__dlpack_device__()
    if device_type == DEVICE_CUDA:
        raise TritonModelException(
            "DLPack capsule passed pointer to memory allocated on GPU device,           when GPU is not available"
        )
    if device_type not in (DEVICE_CPU, DEVICE_CUDA_HOST):
        raise TritonModelException(f"DLDevice type {int(device_type)} is not support by Python backend.")
    return read_capsule(obj.__dlpack__(stream=None))
