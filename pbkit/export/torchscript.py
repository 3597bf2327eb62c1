"""Export a torch module to TorchScript for a submodel's ``pytorch_libtorch`` variant."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ..spec.submodel import Submodel
from .onnx import DEFAULT_ATOL, DEFAULT_RTOL
from .report import ExportError, ExportReport, ParityCheck, ParityError


def export_torchscript(
    module: Any,
    submodel: Submodel,
    example_inputs: Mapping[str, Any],
    *,
    path: str | Path,
    method: Literal["trace", "script"] = "trace",
    check_inputs: Sequence[Mapping[str, Any]] = (),
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ExportReport:
    """Write ``module`` as TorchScript to ``path`` for Triton's PyTorch backend, and check it.

    With ``method="trace"`` (the default) the module is wrapped so that the saved
    ``forward`` takes the declared inputs, named as declared, in declared order, and returns
    the declared outputs in declared order (one tensor, or a tuple). Triton's PyTorch
    backend then maps inputs by argument name and outputs by position, which matches the
    config pbkit writes. ``method="script"`` scripts the module itself, which must already
    have that signature.

    The saved file is loaded back and run on the example inputs, on them with the batch
    doubled (a traced module can freeze a size into the graph) and on each of
    ``check_inputs``, with the same tolerance rule as :func:`~pbkit.export.export_onnx`.
    """
    with warnings.catch_warnings():
        # TorchScript is deprecated in recent torch, but it is what Triton's PyTorch backend loads.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _export_torchscript(
            module, submodel, example_inputs, Path(path), method, check_inputs, atol, rtol
        )


def _export_torchscript(
    module: Any,
    submodel: Submodel,
    example_inputs: Mapping[str, Any],
    path: Path,
    method: str,
    check_inputs: Sequence[Mapping[str, Any]],
    atol: float,
    rtol: float,
) -> ExportReport:
    import torch

    from . import _torch_io as tio

    sets = tio.check_sets(submodel, example_inputs, check_inputs)
    wrapped = tio.adapter(module, submodel)
    with tio.evaluation_mode(module):
        references = tio.reference_outputs(wrapped, submodel, sets)
        try:
            if method == "trace":
                compiled = torch.jit.trace(wrapped, tuple(sets[0][1].values()), check_trace=False)
            elif method == "script":
                compiled = torch.jit.script(module)
            else:
                raise ExportError(f"unknown TorchScript method {method!r}; use 'trace' or 'script'")
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(
                f"could not {method} the module for submodel '{submodel.name}': {type(exc).__name__}: {exc}"
            ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() or path.is_symlink():
        path.unlink()  # a new file, so hard links to the old one keep the old content
    torch.jit.save(compiled, str(path))
    loaded = torch.jit.load(str(path), map_location="cpu")
    report = ExportReport(submodel.name, "torchscript", path, method, atol, rtol, tio.dynamic_axes(submodel))
    arguments = [a.name for a in loaded.forward.schema.arguments[1:]]
    if len(arguments) != len(submodel.inputs):
        raise ExportError(
            f"{path}: forward takes {arguments}, but submodel '{submodel.name}' declares "
            f"{len(submodel.inputs)} input(s) {[t.name for t in submodel.inputs]}"
        )
    if arguments != [t.name for t in submodel.inputs]:
        report.notes.append(
            f"forward takes {arguments}, not the declared input names, so Triton passes inputs by position"
        )
    for (label, tensors), reference in zip(sets, references, strict=True):
        try:
            with torch.no_grad():
                actual = tio.outputs_by_name(loaded(*(t.cpu() for t in tensors.values())), submodel)
        except Exception as exc:
            raise ExportError(f"the saved TorchScript {path} fails on the {label}: {exc}") from exc
        report.checks.append(
            ParityCheck(label, tio.shapes(tensors), tio.compare(reference, actual, atol, rtol))
        )
    if not report.passed:
        raise ParityError(report)
    return report
