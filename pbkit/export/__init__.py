"""Export torch modules as a submodel's ONNX, TorchScript and TensorRT variants.

The exported files carry exactly the submodel's declared tensor names, types and order,
and each export is checked against torch before it is accepted::

    from pbkit.export import export_onnx, export_torchscript, trtexec_command

    report = export_onnx(network, encoder, {"features": torch.randn(2, 4)}, path="exported/encoder.onnx")
    print(report.summary())          # max |onnx - torch| per output, per check
    export_torchscript(network, encoder, {"features": torch.randn(2, 4)}, path="exported/encoder.pt")
    print(trtexec_command(encoder, "exported/encoder.onnx", plan_path="exported/encoder.plan"))

``pbkit export MODULE:FACTORY`` does all of it from the command line (see
:class:`ExportTarget`). Only this package imports torch; :mod:`pbkit.export.tensorrt` and
:mod:`pbkit.export.configs` work without it.
"""

from .configs import declared_path, file_variant, variant_config, write_variant_repository
from .onnx import DEFAULT_ATOL, DEFAULT_RTOL, export_onnx
from .report import ExportError, ExportReport, OutputDifference, ParityCheck, ParityError
from .target import ExportTarget, TargetResult, export_target, load_targets
from .tensorrt import (
    ShapeProfile,
    TensorRTUnavailable,
    build_plan,
    polygraphy_command,
    shape_profile,
    trtexec_argv,
    trtexec_command,
)
from .torchscript import export_torchscript

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "ExportError",
    "ExportReport",
    "ExportTarget",
    "OutputDifference",
    "ParityCheck",
    "ParityError",
    "ShapeProfile",
    "TargetResult",
    "TensorRTUnavailable",
    "build_plan",
    "declared_path",
    "export_onnx",
    "export_target",
    "export_torchscript",
    "file_variant",
    "load_targets",
    "polygraphy_command",
    "shape_profile",
    "trtexec_argv",
    "trtexec_command",
    "variant_config",
    "write_variant_repository",
]
