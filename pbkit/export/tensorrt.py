"""Build a submodel's TensorRT engine (``model.plan``) from its ONNX file.

An engine is tied to one GPU architecture and TensorRT version, so it is built on the
machine that serves it. :func:`trtexec_command` and :func:`polygraphy_command` print the
exact command; :func:`build_plan` runs ``trtexec`` when it is on ``PATH``, or the
``tensorrt`` Python package when that is installed, and otherwise raises
:class:`TensorRTUnavailable` carrying the command to run elsewhere.

Shapes: an input with a variable axis (the batch axis when ``max_batch_size > 0``, or a
``-1`` dim) needs a min/opt/max shape in the engine's optimization profile. When its only
variable axis is the batch axis pbkit derives the ones not given (batch 1 / ``opt_batch``
or ``max_batch_size`` / ``max_batch_size``); inputs with ``-1`` dims need all three given.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..spec.submodel import Submodel
from .report import ExportError

Shape = tuple[int, ...]
Shapes = Mapping[str, Sequence[int]]


class TensorRTUnavailable(ExportError):
    """Neither ``trtexec`` nor the ``tensorrt`` package is available; ``command`` builds the plan elsewhere."""

    def __init__(self, command: str) -> None:
        super().__init__(f"TensorRT is not available here; on a GPU machine with TensorRT run:\n  {command}")
        self.command = command


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimization profile: full shapes (batch first when batching) of each variable input."""

    min: dict[str, Shape]
    opt: dict[str, Shape]
    max: dict[str, Shape]

    @property
    def inputs(self) -> list[str]:
        return list(self.min)


def shape_profile(
    submodel: Submodel,
    *,
    min_shapes: Shapes | None = None,
    opt_shapes: Shapes | None = None,
    max_shapes: Shapes | None = None,
    opt_batch: int | None = None,
) -> ShapeProfile:
    """The optimization profile for ``submodel``: given shapes, checked, and derived ones."""
    given = [dict(min_shapes or {}), dict(opt_shapes or {}), dict(max_shapes or {})]
    declared = {t.name: t for t in submodel.inputs}
    for shapes in given:
        unknown = sorted(set(shapes) - set(declared))
        if unknown:
            raise ExportError(
                f"shapes given for {unknown}, which submodel '{submodel.name}' does not declare"
            )
    batched = submodel.max_batch_size > 0
    if opt_batch is not None and batched and not 1 <= opt_batch <= submodel.max_batch_size:
        raise ExportError(f"opt_batch {opt_batch} is outside 1..max_batch_size ({submodel.max_batch_size})")
    profile = ShapeProfile({}, {}, {})
    for name, spec in declared.items():
        if not batched and -1 not in spec.dims:
            if any(name in shapes for shapes in given):
                raise ExportError(
                    f"input '{name}' of submodel '{submodel.name}' has a fixed shape; give no shapes"
                )
            continue
        chosen = [shapes.get(name) for shapes in given]
        if any(shape is None for shape in chosen) and -1 in spec.dims:
            missing = [b for b, shape in zip(("min", "opt", "max"), chosen, strict=True) if shape is None]
            raise ExportError(
                f"input '{name}' of submodel '{submodel.name}' has variable dims {list(spec.dims)}; "
                f"give its {', '.join(missing)} shape(s)"
            )
        top = submodel.max_batch_size
        derived = [(1, *spec.dims), (opt_batch or top, *spec.dims), (top, *spec.dims)]
        low, mid, high = (
            tuple(int(d) for d in (shape if shape is not None else default))
            for shape, default in zip(chosen, derived, strict=True)
        )
        _check_profile_shapes(submodel, name, spec.dims, low, mid, high)
        profile.min[name], profile.opt[name], profile.max[name] = low, mid, high
    return profile


def _check_profile_shapes(
    submodel: Submodel, name: str, dims: tuple[int, ...], low: Shape, mid: Shape, high: Shape
) -> None:
    batched = submodel.max_batch_size > 0
    expected = ((-1,) if batched else ()) + tuple(dims)
    where = f"input '{name}' of submodel '{submodel.name}'"
    for label, shape in (("min", low), ("opt", mid), ("max", high)):
        if len(shape) != len(expected) or any(w not in (-1, d) for w, d in zip(expected, shape, strict=True)):
            raise ExportError(
                f"{where}: {label} shape {list(shape)} does not fit {list(expected)} (-1 is any size)"
            )
        if min(shape, default=1) < 1:
            raise ExportError(f"{where}: {label} shape {list(shape)} has a size below 1")
        if batched and shape[0] > submodel.max_batch_size:
            raise ExportError(
                f"{where}: {label} batch {shape[0]} exceeds max_batch_size ({submodel.max_batch_size})"
            )
    if not all(a <= b <= c for a, b, c in zip(low, mid, high, strict=True)):
        raise ExportError(
            f"{where}: shapes must satisfy min <= opt <= max, got {list(low)}, {list(mid)}, {list(high)}"
        )


def _onnx_file(onnx_path: str | Path) -> Path:
    """The ONNX file itself (a folder export keeps it as ``model.onnx`` inside)."""
    path = Path(onnx_path)
    return path / "model.onnx" if path.is_dir() else path


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _trtexec_name(name: str) -> str:
    return f"'{name}'" if ":" in name else name


def trtexec_argv(
    submodel: Submodel,
    onnx_path: str | Path,
    *,
    plan_path: str | Path = "model.plan",
    min_shapes: Shapes | None = None,
    opt_shapes: Shapes | None = None,
    max_shapes: Shapes | None = None,
    opt_batch: int | None = None,
    fp16: bool = True,
    workspace_mib: int | None = None,
    extra_args: Sequence[str] = (),
    trtexec: str = "trtexec",
) -> list[str]:
    """The ``trtexec`` argument list that builds ``plan_path`` (see :func:`trtexec_command`)."""
    profile = shape_profile(
        submodel, min_shapes=min_shapes, opt_shapes=opt_shapes, max_shapes=max_shapes, opt_batch=opt_batch
    )
    argv = [trtexec, f"--onnx={_onnx_file(onnx_path)}", f"--saveEngine={plan_path}"]
    for flag, shapes in (
        ("--minShapes", profile.min),
        ("--optShapes", profile.opt),
        ("--maxShapes", profile.max),
    ):
        if shapes:
            argv.append(f"{flag}=" + ",".join(f"{_trtexec_name(n)}:{_dims(s)}" for n, s in shapes.items()))
    if fp16:
        argv.append("--fp16")
    if workspace_mib:
        argv.append(f"--memPoolSize=workspace:{int(workspace_mib)}M")
    argv += list(extra_args)
    return argv


def trtexec_command(
    submodel: Submodel,
    onnx_path: str | Path,
    *,
    plan_path: str | Path = "model.plan",
    min_shapes: Shapes | None = None,
    opt_shapes: Shapes | None = None,
    max_shapes: Shapes | None = None,
    opt_batch: int | None = None,
    fp16: bool = True,
    workspace_mib: int | None = None,
    extra_args: Sequence[str] = (),
) -> str:
    """The shell command that builds the submodel's ``model.plan`` from ``onnx_path`` with trtexec.

    For example ``trtexec --onnx=enc.onnx --saveEngine=model.plan --minShapes=features:1x4
    --optShapes=features:8x4 --maxShapes=features:8x4 --fp16``. Shapes are full shapes
    (batch first when batching) by input name; see :func:`shape_profile`.
    """
    return shlex.join(
        trtexec_argv(
            submodel,
            onnx_path,
            plan_path=plan_path,
            min_shapes=min_shapes,
            opt_shapes=opt_shapes,
            max_shapes=max_shapes,
            opt_batch=opt_batch,
            fp16=fp16,
            workspace_mib=workspace_mib,
            extra_args=extra_args,
        )
    )


def polygraphy_command(
    submodel: Submodel,
    onnx_path: str | Path,
    *,
    plan_path: str | Path = "model.plan",
    min_shapes: Shapes | None = None,
    opt_shapes: Shapes | None = None,
    max_shapes: Shapes | None = None,
    opt_batch: int | None = None,
    fp16: bool = True,
) -> str:
    """The same build with ``polygraphy convert`` (TensorRT's Python tooling)."""
    profile = shape_profile(
        submodel, min_shapes=min_shapes, opt_shapes=opt_shapes, max_shapes=max_shapes, opt_batch=opt_batch
    )
    argv = ["polygraphy", "convert", str(_onnx_file(onnx_path)), "--convert-to", "trt", "-o", str(plan_path)]
    if fp16:
        argv.append("--fp16")
    for flag, shapes in (
        ("--trt-min-shapes", profile.min),
        ("--trt-opt-shapes", profile.opt),
        ("--trt-max-shapes", profile.max),
    ):
        if shapes:
            argv.append(flag)
            argv += [f"{n}:[{','.join(str(d) for d in s)}]" for n, s in shapes.items()]
    return shlex.join(argv)


def build_plan(
    submodel: Submodel,
    onnx_path: str | Path,
    plan_path: str | Path,
    *,
    min_shapes: Shapes | None = None,
    opt_shapes: Shapes | None = None,
    max_shapes: Shapes | None = None,
    opt_batch: int | None = None,
    fp16: bool = True,
    workspace_mib: int | None = None,
    using: Literal["auto", "trtexec", "python"] = "auto",
    trtexec: str | None = None,
    timeout_s: float | None = None,
) -> Path:
    """Build ``plan_path`` from the ONNX file on this machine's GPU.

    ``using="auto"`` runs ``trtexec`` (``trtexec=`` or found on ``PATH``) and otherwise the
    ``tensorrt`` Python package. Raises :class:`TensorRTUnavailable` (with the command to
    run on a GPU machine) when neither is there, and :class:`ExportError` when the build fails.
    """
    options: dict[str, Any] = {
        "min_shapes": min_shapes,
        "opt_shapes": opt_shapes,
        "max_shapes": max_shapes,
        "opt_batch": opt_batch,
        "fp16": fp16,
    }
    plan = Path(plan_path)
    command = trtexec_command(submodel, onnx_path, plan_path=plan, workspace_mib=workspace_mib, **options)
    executable = trtexec or shutil.which("trtexec")
    if using in ("auto", "trtexec") and executable:
        argv = trtexec_argv(
            submodel, onnx_path, plan_path=plan, workspace_mib=workspace_mib, trtexec=executable, **options
        )
        plan.parent.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExportError(f"could not run {shlex.join(argv)}: {exc}") from exc
        if done.returncode != 0 or not plan.is_file():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise ExportError(f"trtexec failed with exit code {done.returncode}:\n{tail}")
        return plan
    if using in ("auto", "python"):
        try:
            import tensorrt  # type: ignore[import-not-found]
        except ImportError:
            tensorrt = None
        if tensorrt is not None:
            profile = shape_profile(
                submodel,
                min_shapes=min_shapes,
                opt_shapes=opt_shapes,
                max_shapes=max_shapes,
                opt_batch=opt_batch,
            )
            _build_with_python_api(tensorrt, _onnx_file(onnx_path), plan, profile, fp16, workspace_mib)
            return plan
    raise TensorRTUnavailable(command)


def _build_with_python_api(
    trt: Any, onnx_file: Path, plan: Path, profile: ShapeProfile, fp16: bool, workspace_mib: int | None
) -> None:
    """Parse the ONNX file, add the optimization profile, and serialize the engine to ``plan``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(1 << int(explicit) if explicit is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_file}: {errors}")
    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if profile.inputs:
        optimization = builder.create_optimization_profile()
        for name in profile.inputs:
            optimization.set_shape(name, profile.min[name], profile.opt[name], profile.max[name])
        config.add_optimization_profile(optimization)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_file}; see its log above")
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_bytes(bytes(serialized))
