"""``pbkit export MODULE:FACTORY``: what a factory returns, and exporting it to every format."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..spec.submodel import Submodel
from .configs import SUFFIXES, declared_path, file_variant, write_variant_repository
from .onnx import DEFAULT_ATOL, DEFAULT_RTOL, Exporter, export_onnx
from .report import ExportError, ExportReport, ParityError
from .tensorrt import Shapes, TensorRTUnavailable, build_plan, trtexec_command
from .torchscript import export_torchscript

FORMATS = ("onnx", "torchscript", "tensorrt")


@dataclass
class ExportTarget:
    """One submodel to export: the torch module, its declaration and example inputs.

    A factory named on the command line returns one of these, a list of them, or a tuple
    ``(module, submodel, example_inputs)``. The other fields are optional:
    ``dynamic_axes`` and ``check_inputs`` as for :func:`~pbkit.export.export_onnx`,
    the TensorRT profile shapes, and a tolerance for this submodel.
    """

    module: Any
    submodel: Submodel
    example_inputs: Mapping[str, Any]
    dynamic_axes: Mapping[str, Mapping[int, str] | Sequence[int]] | None = None
    check_inputs: Sequence[Mapping[str, Any]] = ()
    min_shapes: Shapes | None = None
    opt_shapes: Shapes | None = None
    max_shapes: Shapes | None = None
    atol: float | None = None
    rtol: float | None = None


@dataclass
class TargetResult:
    """What exporting one :class:`ExportTarget` produced."""

    submodel: str
    files: dict[str, Path] = field(default_factory=dict)
    reports: list[ExportReport] = field(default_factory=list)
    failed: list[ExportReport] = field(default_factory=list)
    trtexec: str = ""
    plan_built: bool = False
    repositories: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems

    def summary(self) -> str:
        lines = [f"{self.submodel}:"]
        lines += [
            f"  {line}" for report in (*self.reports, *self.failed) for line in report.summary().splitlines()
        ]
        if "tensorrt" in self.files:
            if self.plan_built:
                lines.append(f"  tensorrt {self.files['tensorrt']}: built")
            else:
                lines.append(f"  tensorrt {self.files['tensorrt']}: not built here; on a GPU machine run:")
                lines.append(f"    {self.trtexec}")
        for kind, repository in self.repositories.items():
            lines.append(f"  {kind} config: {repository / self.submodel / 'config.pbtxt'}")
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def load_targets(reference: str) -> list[ExportTarget]:
    """Call the factory named by ``MODULE:FACTORY`` and return what it describes.

    ``MODULE`` is a ``.py`` file path (its folder is importable while the factory runs, so
    it can import its neighbours) or a dotted module name importable from the current folder.
    """
    module_ref, _, factory_name = reference.rpartition(":")
    if not module_ref or not factory_name:
        raise ExportError(
            f"expected MODULE:FACTORY (e.g. models/bls/export_models.py:encoder), got {reference!r}"
        )
    is_file = module_ref.endswith(".py") or os.sep in module_ref or "/" in module_ref
    folder = str(Path(module_ref).resolve().parent) if is_file else os.getcwd()
    sys.path.insert(0, folder)
    try:
        module = _import_file(Path(module_ref)) if is_file else importlib.import_module(module_ref)
        factory = getattr(module, factory_name, None)
        if not callable(factory):
            raise ExportError(f"{module_ref} has no function {factory_name!r}")
        try:
            produced = factory()
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{reference} raised {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(folder)
    return _as_targets(produced, reference)


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExportError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _as_targets(produced: Any, reference: str) -> list[ExportTarget]:
    if isinstance(produced, ExportTarget):
        return [produced]
    if isinstance(produced, tuple) and len(produced) == 3 and isinstance(produced[1], Submodel):
        return [ExportTarget(*produced)]
    if isinstance(produced, (list, tuple)) and produced:
        return [target for item in produced for target in _as_targets(item, reference)]
    raise ExportError(
        f"{reference} returned {type(produced).__name__}; return an ExportTarget, a list of them, "
        "or a tuple (torch module, pbkit.Submodel, example inputs)"
    )


def export_target(
    target: ExportTarget,
    *,
    formats: Sequence[str] = FORMATS,
    output: str | Path | None = None,
    repositories: str | Path | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    opset: int | None = None,
    exporter: Exporter = "auto",
    torchscript_method: Literal["trace", "script"] = "trace",
    fp16: bool = True,
    workspace_mib: int | None = None,
    plan: Literal["auto", "build", "skip"] = "auto",
    trtexec: str | None = None,
) -> TargetResult:
    """Export one target to ``formats``, write each variant's config, and check them.

    Files go to ``output/<submodel><suffix>`` when ``output`` is given, else to the paths
    the submodel declares for its variants (so ``pbkit build`` finds them). TensorRT needs
    the ONNX file, which is then exported too. ``plan="auto"`` builds ``model.plan`` when
    TensorRT is available and otherwise reports the trtexec command; ``"build"`` requires it.
    With ``repositories``, each variant gets a one-model repository
    ``<repositories>/<kind>/<submodel>/`` that ``pbkit check`` validates.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown format(s) {unknown}; expected {', '.join(FORMATS)}")
    kinds = [k for k in FORMATS if k in formats or (k == "onnx" and "tensorrt" in formats)]
    submodel = target.submodel
    result = TargetResult(submodel.name)
    for kind in kinds:
        result.files[kind] = _destination(submodel, kind, output)
    tolerance = {
        "atol": atol if atol is not None else target.atol if target.atol is not None else DEFAULT_ATOL,
        "rtol": rtol if rtol is not None else target.rtol if target.rtol is not None else DEFAULT_RTOL,
    }
    for kind in ("onnx", "torchscript"):
        if kind not in kinds:
            continue
        try:
            if kind == "onnx":
                report = export_onnx(
                    target.module,
                    submodel,
                    target.example_inputs,
                    path=result.files[kind],
                    dynamic_axes=target.dynamic_axes,
                    check_inputs=target.check_inputs,
                    opset=opset,
                    exporter=exporter,
                    **tolerance,
                )
            else:
                report = export_torchscript(
                    target.module,
                    submodel,
                    target.example_inputs,
                    path=result.files[kind],
                    method=torchscript_method,
                    check_inputs=target.check_inputs,
                    **tolerance,
                )
        except ParityError as exc:
            result.failed.append(exc.report)
            continue
        result.reports.append(report)
    if "tensorrt" in kinds:
        _tensorrt(target, result, fp16=fp16, workspace_mib=workspace_mib, plan=plan, trtexec=trtexec)
    if repositories is not None:
        _write_repositories(submodel, result, Path(repositories), [k for k in kinds if k in formats])
    return result


def _destination(submodel: Submodel, kind: str, output: str | Path | None) -> Path:
    if output is not None:
        return Path(output) / f"{submodel.name}{SUFFIXES[kind]}"
    declared = declared_path(submodel, kind)
    if declared is None:
        raise ExportError(
            f"submodel '{submodel.name}' declares no {kind} variant, so there is no path for its file; "
            "give an output folder"
        )
    return declared


def _tensorrt(
    target: ExportTarget,
    result: TargetResult,
    *,
    fp16: bool,
    workspace_mib: int | None,
    plan: str,
    trtexec: str | None,
) -> None:
    shapes = {
        "min_shapes": target.min_shapes,
        "opt_shapes": target.opt_shapes,
        "max_shapes": target.max_shapes,
    }
    onnx_path, plan_path = result.files["onnx"], result.files["tensorrt"]
    result.trtexec = trtexec_command(
        target.submodel, onnx_path, plan_path=plan_path, fp16=fp16, workspace_mib=workspace_mib, **shapes
    )
    if plan == "skip" or any(r.kind == "onnx" for r in result.failed):
        return
    try:
        build_plan(
            target.submodel,
            onnx_path,
            plan_path,
            fp16=fp16,
            workspace_mib=workspace_mib,
            trtexec=trtexec,
            **shapes,
        )
    except TensorRTUnavailable:
        if plan == "build":
            raise
        return
    result.plan_built = True


def _write_repositories(submodel: Submodel, result: TargetResult, root: Path, kinds: Sequence[str]) -> None:
    from ..config.check import check_repository

    for kind in kinds:
        model_file = result.files.get(kind)
        present = (
            model_file is not None
            and model_file.exists()
            and not (kind == "tensorrt" and not result.plan_built)
        )
        repository = root / kind
        write_variant_repository(submodel, kind, repository, model_file if present else None)
        result.repositories[kind] = repository
        if not present:
            result.notes.append(
                f"{repository / submodel.name / '1'} has no {file_variant(submodel, kind).model_filename} yet; "
                "put it there before serving this variant"
            )
            continue
        result.problems += [str(problem) for problem in check_repository(repository)]
