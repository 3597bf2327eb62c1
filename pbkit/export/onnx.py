"""Export a torch module to ONNX for a submodel, and check it with ONNX Runtime."""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ..spec.dtypes import DataType
from ..spec.submodel import Submodel
from .report import ExportError, ExportReport, ParityCheck, ParityError

Exporter = Literal["auto", "dynamo", "torchscript"]

#: Weights above this size are written as external data (protobuf files stop at 2 GiB).
EMBED_LIMIT_BYTES = 1800 * 1024 * 1024

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


def onnx_type(dtype: DataType) -> str:
    """ONNX Runtime's name for a declared data type, such as ``tensor(float)``."""
    name = dtype.numpy.name
    return "tensor({})".format({"float32": "float", "float64": "double", "object": "string"}.get(name, name))


def export_onnx(
    module: Any,
    submodel: Submodel,
    example_inputs: Mapping[str, Any],
    *,
    path: str | Path,
    dynamic_axes: Mapping[str, Mapping[int, str] | Sequence[int]] | None = None,
    check_inputs: Sequence[Mapping[str, Any]] = (),
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    opset: int | None = None,
    exporter: Exporter = "auto",
    external_data: bool | None = None,
) -> ExportReport:
    """Write ``module`` as ONNX to ``path`` with the submodel's tensor names, and check it.

    ``example_inputs`` maps every declared input to a torch tensor or numpy array with the
    batch axis first when the submodel batches. The module's forward is called with the
    inputs by name when it takes them by name, else positionally in declared order; it may
    return a tensor, a tuple in declared output order, or a dict by output name.

    Variable axes are the batch axis (``max_batch_size > 0``) and every ``-1`` dim;
    ``dynamic_axes`` adds or renames axes. ``exporter="auto"`` uses the ``torch.export``
    based exporter and falls back to the TorchScript-based one when it fails.

    The file is written straight to ``path``, with its weights inside, so it can be
    renamed or copied freely. ``external_data=True`` (automatic above about 1.8 GiB of
    weights) instead makes ``path`` a folder holding ``model.onnx`` and its weight file,
    the layout Triton's ONNX Runtime backend loads when ``model.onnx`` is a folder.

    ONNX Runtime then runs the file on the example inputs, on them with the batch doubled
    (when that fits in ``max_batch_size``) and on each of ``check_inputs``: every output
    must satisfy ``|onnx - torch| <= atol + rtol * |torch|`` elementwise (integer outputs
    must be equal), else :class:`ParityError` is raised with the report. Names, data types,
    ranks and variable axes of the file are checked against the declaration too.
    """
    from . import _torch_io as tio

    path = Path(path)
    axes = tio.dynamic_axes(submodel, dynamic_axes)
    sets = tio.check_sets(submodel, example_inputs, check_inputs)
    wrapped = tio.adapter(module, submodel)
    with tio.evaluation_mode(module):
        references = tio.reference_outputs(wrapped, submodel, sets)
        as_folder = external_data if external_data is not None else _weight_bytes(module) >= EMBED_LIMIT_BYTES
        target = _prepare_target(path, as_folder)
        used, notes = _export(wrapped, submodel, sets[0][1], target, axes, opset, exporter, as_folder)
    report = ExportReport(submodel.name, "onnx", path, used, atol, rtol, axes, notes=notes)
    session = _session(target)
    _check_session(session, submodel, axes, target)
    output_names = [o.name for o in session.get_outputs()]
    for (label, tensors), reference in zip(sets, references, strict=True):
        try:
            results = session.run(None, tio.numpy_inputs(tensors))
        except Exception as exc:
            raise ExportError(f"ONNX Runtime fails on {target} with the {label}: {exc}") from exc
        actual = dict(zip(output_names, results, strict=True))
        report.checks.append(
            ParityCheck(label, tio.shapes(tensors), tio.compare(reference, actual, atol, rtol))
        )
    if not report.passed:
        raise ParityError(report)
    return report


def _weight_bytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def _prepare_target(path: Path, as_folder: bool) -> Path:
    """Clear what an earlier export left at ``path`` and return the file to write."""
    if as_folder:
        if path.is_file() or path.is_symlink():
            path.unlink()
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("model.onnx*"):
            stale.unlink()
        return path / "model.onnx"
    if path.is_dir() and not path.is_symlink():
        if not (path / "model.onnx").exists():
            raise ExportError(f"{path} is a folder that does not hold an earlier export; give a file path")
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()  # a new file, so hard links to the old one keep the old content
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _export(
    wrapped: Any,
    submodel: Submodel,
    example: Mapping[str, Any],
    target: Path,
    axes: Mapping[str, Mapping[int, str]],
    opset: int | None,
    exporter: Exporter,
    as_folder: bool,
) -> tuple[str, list[str]]:
    """Run the exporter(s); return the one that worked and notes about the others."""
    import torch

    from ._torch_io import parameter_name

    input_names = [t.name for t in submodel.inputs]
    output_names = [t.name for t in submodel.outputs]
    args = tuple(example.values())
    attempts: list[str] = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    failures: list[str] = []
    for kind in attempts:
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                warnings.filterwarnings("ignore", message=r".*axis name.*will not be used")
                if kind == "dynamo":
                    dims: dict[str, Any] = {}
                    shapes = {
                        parameter_name(name, i): {
                            axis: dims.setdefault(dim, torch.export.Dim(dim))
                            for axis, dim in axes.get(name, {}).items()
                        }
                        or None
                        for i, name in enumerate(input_names)
                    }
                    torch.onnx.export(
                        wrapped,
                        args,
                        str(target),
                        input_names=input_names,
                        output_names=output_names,
                        opset_version=opset,
                        dynamo=True,
                        external_data=as_folder,
                        dynamic_shapes=shapes,
                        verbose=False,
                    )
                else:
                    torch.onnx.export(
                        wrapped,
                        args,
                        str(target),
                        input_names=input_names,
                        output_names=output_names,
                        opset_version=opset,
                        dynamo=False,
                        dynamic_axes={name: dict(named) for name, named in axes.items()},
                    )
        except Exception as exc:
            failures.append(f"{kind} exporter: {type(exc).__name__}: {_first_line(exc)}")
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            continue
        notes = [f"{failure}; used the {kind} exporter instead" for failure in failures]
        return kind, notes
    raise ExportError(f"could not export submodel '{submodel.name}' to ONNX: " + "; ".join(failures))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    cause = exc.__cause__
    if cause is not None:
        text = f"{text.splitlines()[0]} (caused by {type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''})"
    return text.splitlines()[0]


def _session(target: Path) -> Any:
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load {target}: {exc}") from exc


def _check_session(
    session: Any, submodel: Submodel, axes: Mapping[str, Mapping[int, str]], target: Path
) -> None:
    """The file's tensors must be the declared ones, with their types, ranks and variable axes."""
    offset = 1 if submodel.max_batch_size > 0 else 0
    for kind, declared, found in (
        ("input", submodel.inputs, session.get_inputs()),
        ("output", submodel.outputs, session.get_outputs()),
    ):
        by_name = {t.name: t for t in found}
        missing = [t.name for t in declared if t.name not in by_name]
        extra = sorted(set(by_name) - {t.name for t in declared})
        if missing or extra:
            raise ExportError(
                f"{target} has {kind}s {list(by_name)}, but submodel '{submodel.name}' declares "
                f"{[t.name for t in declared]} (missing {missing}, unexpected {extra})"
            )
        for spec in declared:
            arg = by_name[spec.name]
            where = f"{target}: {kind} '{spec.name}'"
            if arg.type != onnx_type(spec.dtype):
                raise ExportError(
                    f"{where} is {arg.type}, declared {spec.dtype.value} ({onnx_type(spec.dtype)})"
                )
            expected = ([-1] if offset else []) + list(spec.dims)
            if len(arg.shape) != len(expected):
                raise ExportError(f"{where} has rank {len(arg.shape)}, declared shape {expected}")
            for axis, (dim, want) in enumerate(zip(arg.shape, expected, strict=True)):
                if axis in axes.get(spec.name, {}) and isinstance(dim, int):
                    raise ExportError(
                        f"{where}: axis {axis} was exported with the fixed size {dim} but must be variable; "
                        "the module probably uses that size as a constant"
                    )
                if want != -1 and isinstance(dim, int) and dim != want:
                    raise ExportError(f"{where}: axis {axis} has size {dim}, declared {want}")
