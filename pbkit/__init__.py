"""pbkit: write, test and ship NVIDIA Triton Python-backend models from one declaration.

Declare a model::

    import pbkit
    from pbkit import FP32
    from typing import TypedDict

    class Out(TypedDict):
        SUM: FP32[4]

    @pbkit.model(max_batch_size=8)
    class Add:
        def predict(self, A: FP32[4], B: FP32[4]) -> Out:
            return {"SUM": A + B}

then ``pbkit build models/`` writes a standard Triton model repository, ``pbkit serve``
runs it on a real tritonserver, and :mod:`pbkit.testing` tests it with or without a server.

This package imports only the declaration layer and the in-Triton runtime (numpy only);
config rendering, building, the CLI and testing live in their own subpackages.
"""

from .runtime import InvalidArgument, SetupContext, SubmodelError
from .spec import (
    BOOL,
    BYTES,
    FP16,
    FP32,
    FP64,
    INT8,
    INT16,
    INT32,
    INT64,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    BatchInfo,
    DataType,
    DynamicBatching,
    Input,
    InstanceGroup,
    InvalidNameError,
    ModelSpec,
    Output,
    QueuePolicy,
    VersionPolicy,
    Warmup,
    WarmupInput,
    model,
    spec_of,
)
from .spec.ensemble import Ensemble, Step
from .spec.submodel import Onnx, PythonVariant, Submodel, TensorRT, TorchScript

__version__ = "0.1.0"

__all__ = [
    "BOOL",
    "BYTES",
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "BatchInfo",
    "DataType",
    "DynamicBatching",
    "Ensemble",
    "Input",
    "InstanceGroup",
    "InvalidArgument",
    "InvalidNameError",
    "ModelSpec",
    "Onnx",
    "Output",
    "PythonVariant",
    "QueuePolicy",
    "SetupContext",
    "Step",
    "Submodel",
    "SubmodelError",
    "TensorRT",
    "TorchScript",
    "VersionPolicy",
    "Warmup",
    "WarmupInput",
    "__version__",
    "model",
    "spec_of",
]
