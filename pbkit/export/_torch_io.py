"""Bridge a torch module to a submodel's declared tensors (imports torch; used by the exporters).

The exporters never trace the user's module directly. They wrap it in an adapter whose
``forward`` takes the declared inputs positionally, in declared order, under their declared
names, and returns the declared outputs in declared order. So the ONNX graph and the
TorchScript module carry exactly the names and the order the Triton configs use, whatever
the module's own signature and return type (a tensor, a tuple or a dict).
"""

from __future__ import annotations

import contextlib
import inspect
import keyword
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..spec.dtypes import DataType
from ..spec.submodel import Submodel
from ..spec.tensors import TensorSpec
from .report import ExportError, OutputDifference

BATCH_AXIS_NAME = "batch"


def torch_dtype(dtype: DataType) -> torch.dtype:
    """The torch dtype of a declared data type (BYTES has none)."""
    if dtype is DataType.BYTES:
        raise ExportError("BYTES tensors cannot be exported to ONNX, TorchScript or TensorRT")
    return torch.from_numpy(np.zeros(0, dtype=dtype.numpy)).dtype


def parameter_name(name: str, index: int) -> str:
    """The adapter's argument name for an input: its own name when it is a Python identifier."""
    if name.isidentifier() and not keyword.iskeyword(name) and name != "self":
        return name
    return f"input__{index}"


def example_tensors(submodel: Submodel, values: Mapping[str, Any], what: str) -> dict[str, torch.Tensor]:
    """``values`` as torch tensors in declared order, checked against the declared inputs."""
    declared = {t.name: t for t in submodel.inputs}
    unknown = sorted(set(values) - set(declared))
    missing = [name for name in declared if name not in values]
    if unknown or missing:
        raise ExportError(
            f"{what} for submodel '{submodel.name}' must give every declared input "
            f"{list(declared)}; missing {missing}, unknown {unknown}"
        )
    tensors = {}
    for name, spec in declared.items():
        value = values[name]
        tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        expected = torch_dtype(spec.dtype)
        if tensor.dtype != expected:
            raise ExportError(
                f"{what}: input '{name}' of submodel '{submodel.name}' is {tensor.dtype}, "
                f"declared {spec.dtype.value} ({expected})"
            )
        check_shape(submodel, spec, tuple(tensor.shape), f"{what}: input '{name}'")
        tensors[name] = tensor
    return tensors


def check_shape(submodel: Submodel, spec: TensorSpec, shape: tuple[int, ...], what: str) -> None:
    """Raise unless ``shape`` is ``[batch] + dims`` (batching) or ``dims`` (no batching)."""
    batched = submodel.max_batch_size > 0
    dims = shape[1:] if batched else shape
    if (batched and not shape) or not spec.dims_match(tuple(dims)):
        expected = (["batch"] if batched else []) + list(spec.dims)
        raise ExportError(
            f"{what} of submodel '{submodel.name}' has shape {list(shape)}, expected {expected} (-1 is any size)"
        )
    if batched and not 1 <= shape[0] <= submodel.max_batch_size:
        raise ExportError(
            f"{what} of submodel '{submodel.name}' has batch size {shape[0]}, "
            f"outside 1..max_batch_size ({submodel.max_batch_size})"
        )


def dynamic_axes(
    submodel: Submodel, extra: Mapping[str, Mapping[int, str] | Sequence[int]] | None = None
) -> dict[str, dict[int, str]]:
    """The variable axes of every declared tensor, by tensor name.

    Axis 0 is ``batch`` when the submodel batches, and each ``-1`` dim gets a name of its
    own; ``extra`` adds axes or renames them (``{"features": {1: "frames"}}``, or a list
    of axes as in ``torch.onnx.export``).
    """
    offset = 1 if submodel.max_batch_size > 0 else 0
    axes: dict[str, dict[int, str]] = {}
    for spec in (*submodel.inputs, *submodel.outputs):
        named = {0: BATCH_AXIS_NAME} if offset else {}
        for position, dim in enumerate(spec.dims):
            if dim == -1:
                named[position + offset] = _dim_name(f"{spec.name}_{position + offset}")
        if named:
            axes[spec.name] = named
    known = {t.name: t for t in (*submodel.inputs, *submodel.outputs)}
    for name, given in (extra or {}).items():
        if name not in known:
            raise ExportError(
                f"dynamic_axes names '{name}', which submodel '{submodel.name}' does not declare"
            )
        entries = given.items() if isinstance(given, Mapping) else ((a, f"{name}_{a}") for a in given)
        rank = len(known[name].dims) + offset
        for axis, dim_name in entries:
            if not 0 <= int(axis) < rank:
                raise ExportError(f"dynamic_axes['{name}']: axis {axis} is outside a tensor of rank {rank}")
            axes.setdefault(name, {})[int(axis)] = _dim_name(str(dim_name))
    return axes


def _dim_name(name: str) -> str:
    cleaned = re.sub(r"\W", "_", name)
    return cleaned if cleaned[:1].isalpha() else f"d_{cleaned}"


class _AdapterBase(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, submodel: Submodel) -> None:
        super().__init__()
        self.module = module
        self.submodel_name = submodel.name
        self.input_names = [t.name for t in submodel.inputs]
        self.output_names = [t.name for t in submodel.outputs]
        self.by_keyword = _accepts_keywords(module, self.input_names)

    def _run(self, tensors: Sequence[torch.Tensor]) -> Any:
        if self.by_keyword:
            result = self.module(**dict(zip(self.input_names, tensors, strict=True)))
        else:
            result = self.module(*tensors)
        outputs = ordered_outputs(result, self.output_names, self.submodel_name)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _accepts_keywords(module: torch.nn.Module, names: Sequence[str]) -> bool:
    """Whether ``module.forward`` takes every input by its declared name."""
    try:
        parameters = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True
    return all(name in parameters for name in names)


def adapter(module: torch.nn.Module, submodel: Submodel) -> torch.nn.Module:
    """Wrap ``module`` so its forward takes and returns exactly the declared tensors, in order."""
    names = [parameter_name(t.name, i) for i, t in enumerate(submodel.inputs)]

    def forward(self: _AdapterBase, *tensors: torch.Tensor) -> Any:
        return self._run(tensors)

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    forward.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    cls = type("SubmodelAdapter", (_AdapterBase,), {"forward": forward})
    wrapped = cls(module, submodel)
    wrapped.training = False  # the wrapped module's own mode is set by evaluation_mode()
    return wrapped


def ordered_outputs(result: Any, names: Sequence[str], submodel: str) -> list[torch.Tensor]:
    """A module's result (tensor, tuple/list, or mapping by name) as the declared outputs in order."""
    if isinstance(result, Mapping):
        missing = [n for n in names if n not in result]
        if missing:
            raise ExportError(
                f"the module for submodel '{submodel}' returned {sorted(result)}, without declared output(s) {missing}"
            )
        return [result[n] for n in names]
    if isinstance(result, torch.Tensor):
        result = (result,)
    if isinstance(result, (tuple, list)) and len(result) == len(names):
        return list(result)
    count = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
    raise ExportError(
        f"the module for submodel '{submodel}' returned {count} value(s) for {len(names)} declared "
        f"output(s) {list(names)}; return a tensor, a tuple in declared order, or a dict by name"
    )


def outputs_by_name(result: Any, submodel: Submodel) -> dict[str, np.ndarray]:
    """The adapter's (or an exported module's) result as numpy arrays by declared output name."""
    names = [t.name for t in submodel.outputs]
    return {
        n: t.detach().cpu().numpy()
        for n, t in zip(names, ordered_outputs(result, names, submodel.name), strict=True)
    }


def check_reference_outputs(submodel: Submodel, outputs: Mapping[str, np.ndarray], batch: int | None) -> None:
    """Raise if torch's outputs do not have the declared data types and shapes."""
    for spec in submodel.outputs:
        array = outputs[spec.name]
        if array.dtype != spec.dtype.numpy:
            raise ExportError(
                f"the module for submodel '{submodel.name}' returns output '{spec.name}' as {array.dtype}, "
                f"declared {spec.dtype.value}; cast it in forward or fix the declaration"
            )
        check_shape(submodel, spec, tuple(array.shape), f"torch's output '{spec.name}'")
        if batch is not None and array.shape[0] != batch:
            raise ExportError(
                f"the module for submodel '{submodel.name}' returns output '{spec.name}' with batch "
                f"{array.shape[0]} for an input batch of {batch}"
            )


def doubled_batch(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same inputs twice along the batch axis, to check that the batch axis is really dynamic."""
    return {name: torch.cat([t, t]) for name, t in tensors.items()}


def compare(
    reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], atol: float, rtol: float
) -> tuple[OutputDifference, ...]:
    """How far each output in ``actual`` is from ``reference`` (shape mismatches never pass)."""
    differences = []
    for name, expected in reference.items():
        got = np.asarray(actual[name])
        if got.shape != expected.shape:
            differences.append(OutputDifference(name, float("inf"), float("inf")))
            continue
        if expected.dtype.kind in "biu":
            mismatched = float(np.count_nonzero(got != expected))
            error = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0))
            differences.append(OutputDifference(name, error, mismatched))
            continue
        want = expected.astype(np.float64)
        delta = np.abs(got.astype(np.float64) - want)
        if np.isnan(delta).any() and not np.array_equal(np.isnan(got), np.isnan(expected)):
            differences.append(OutputDifference(name, float("nan"), float("inf")))
            continue
        delta = np.nan_to_num(delta, nan=0.0)
        excess = delta - (atol + rtol * np.abs(np.nan_to_num(want)))
        differences.append(
            OutputDifference(name, float(delta.max(initial=0.0)), float(excess.max(initial=-atol)))
        )
    return tuple(differences)


def numpy_inputs(tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy() for name, t in tensors.items()}


def shapes(tensors: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(int(d) for d in t.shape) for name, t in tensors.items()}


def check_sets(
    submodel: Submodel, example_inputs: Mapping[str, Any], check_inputs: Sequence[Mapping[str, Any]]
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The inputs an export is checked on: the example, the example with its batch doubled
    (when the submodel batches and that fits), and each of ``check_inputs``."""
    example = example_tensors(submodel, example_inputs, "example_inputs")
    sets = [("example inputs", example)]
    if submodel.max_batch_size > 0:
        doubled = doubled_batch(example)
        if next(iter(doubled.values())).shape[0] <= submodel.max_batch_size:
            sets.append(("example inputs, batch doubled", doubled))
    for index, values in enumerate(check_inputs):
        sets.append((f"check_inputs[{index}]", example_tensors(submodel, values, f"check_inputs[{index}]")))
    return sets


@contextlib.contextmanager
def evaluation_mode(module: torch.nn.Module) -> Iterator[None]:
    """Run with every submodule in eval mode and without autograd, restoring the modes after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.train(training)


def reference_outputs(
    wrapped: torch.nn.Module, submodel: Submodel, sets: Sequence[tuple[str, Mapping[str, torch.Tensor]]]
) -> list[dict[str, np.ndarray]]:
    """Torch's outputs for each check set, checked against the declared outputs."""
    references = []
    for label, tensors in sets:
        try:
            result = wrapped(*tensors.values())
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(
                f"the module for submodel '{submodel.name}' fails in torch on the {label}: {type(exc).__name__}: {exc}"
            ) from exc
        outputs = outputs_by_name(result, submodel)
        batch = next(iter(tensors.values())).shape[0] if submodel.max_batch_size > 0 else None
        check_reference_outputs(submodel, outputs, batch)
        references.append(outputs)
    return references
