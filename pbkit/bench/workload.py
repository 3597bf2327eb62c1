"""What the load generator sends: a model's IO read from its config, and a pool of distinct requests.

Every request of a benchmark is drawn from a pool of ``pool_size`` distinct input sets; request
``i`` uses entry ``i % pool_size``. With a pool several times larger than the concurrency, the
requests in flight at any moment all carry different inputs, so a response delivered to the wrong
request, or computed from another request's inputs, fails the response check.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..spec.dtypes import DataType

__all__ = [
    "InputFactory",
    "ModelInfo",
    "TensorInfo",
    "WorkloadError",
    "load_callable",
    "make_pool",
    "synthetic_inputs",
]

#: Makes the inputs of pool entry ``index`` (a dict of numpy arrays, batch axis included).
InputFactory = Callable[[int], Mapping[str, np.ndarray]]

#: The numpy type of each Triton data type the load generator can fill.
_NUMPY_TYPES: dict[str, Any] = {t.value: t.numpy for t in DataType}

_WORDS = (
    "the a model server request batch of queue tensor latency river mountain small large quick slow "
    "bright dark green blue red yellow cat dog bird horse train city night morning music book paper "
    "window garden coffee water stone cloud signal energy market story letter friend teacher doctor "
    "engine camera bridge forest ocean island winter summer autumn spring reads writes carries finds "
    "builds opens closes watches follows answers measures returns sends holds moves turns and with "
    "under over near behind before after during without across through quietly rapidly carefully"
).split()


class WorkloadError(ValueError):
    """The model's inputs cannot be generated as asked (unknown dims, bad shape option, bad factory)."""


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a model, as its config declares it (dims without the batch axis)."""

    name: str
    datatype: str
    """Triton wire type: ``FP32``, ``INT64``, ``BYTES``..."""
    dims: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """The IO of a served model, read from its config."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    platform: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelInfo:
        """From the JSON form of a model config (as ``get_model_config`` returns it, HTTP or gRPC)."""
        if "config" in config and isinstance(config["config"], Mapping):
            config = config["config"]
        return cls(
            name=str(config.get("name", "")),
            max_batch_size=int(config.get("max_batch_size", 0) or 0),
            inputs=tuple(_tensor(entry) for entry in config.get("input", [])),
            outputs=tuple(_tensor(entry) for entry in config.get("output", [])),
            platform=str(config.get("platform") or config.get("backend") or ""),
        )


def _tensor(entry: Mapping[str, Any]) -> TensorInfo:
    datatype = str(entry.get("data_type", "TYPE_FP32")).removeprefix("TYPE_")
    if datatype == "STRING":
        datatype = "BYTES"
    dims = entry.get("dims", [])
    return TensorInfo(
        name=str(entry["name"]),
        datatype=datatype,
        dims=tuple(int(d) for d in dims),
        optional=bool(entry.get("optional", False)),
    )


@dataclass
class _Generator:
    model: ModelInfo
    batch_size: int
    shapes: Mapping[str, Sequence[int]]
    seed: int
    include_optional: bool
    sentence_words: tuple[int, int] = (6, 24)
    _checked: bool = field(default=False, init=False)

    def shape_of(self, tensor: TensorInfo) -> tuple[int, ...]:
        if tensor.name in self.shapes:
            dims = tuple(int(d) for d in self.shapes[tensor.name])
            if len(dims) != len(tensor.dims) or any(
                want != -1 and want != got for want, got in zip(tensor.dims, dims, strict=True)
            ):
                raise WorkloadError(
                    f"shape {list(dims)} given for input '{tensor.name}' does not fit its dims {list(tensor.dims)}"
                )
            if any(d < 0 for d in dims):
                raise WorkloadError(f"shape given for input '{tensor.name}' must not contain -1")
        else:
            if any(d < 0 for d in tensor.dims):
                raise WorkloadError(
                    f"input '{tensor.name}' has variable dims {list(tensor.dims)}; give its shape "
                    f"(e.g. --shape {tensor.name}="
                    + ",".join("16" if d < 0 else str(d) for d in tensor.dims)
                    + ")"
                )
            dims = tensor.dims
        return (self.batch_size, *dims) if self.model.max_batch_size > 0 else dims

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        inputs: dict[str, np.ndarray] = {}
        for tensor in self.model.inputs:
            if tensor.optional and not self.include_optional:
                continue
            inputs[tensor.name] = self._values(tensor, self.shape_of(tensor), rng)
        return inputs

    def _values(self, tensor: TensorInfo, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        kind = tensor.datatype
        if kind not in _NUMPY_TYPES:
            raise WorkloadError(
                f"input '{tensor.name}' has data type {kind}, which pbkit bench cannot generate"
            )
        if kind == "BYTES":
            flat = [self._sentence(rng).encode("utf-8") for _ in range(int(np.prod(shape, dtype=np.int64)))]
            array = np.empty(len(flat), dtype=object)
            array[:] = flat
            return array.reshape(shape)
        if kind == "BOOL":
            return rng.random(shape) < 0.5
        if kind.startswith("FP"):
            return rng.standard_normal(shape).astype(_NUMPY_TYPES[kind])
        return rng.integers(0, 100, size=shape).astype(_NUMPY_TYPES[kind])

    def _sentence(self, rng: np.random.Generator) -> str:
        low, high = self.sentence_words
        count = int(rng.integers(low, high + 1))
        words = [_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=count)]
        return " ".join(words).capitalize() + "."


def synthetic_inputs(
    model: ModelInfo,
    *,
    batch_size: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    include_optional: bool = False,
) -> InputFactory:
    """A factory of seeded random inputs for ``model``: normal floats, integers in [0, 100), and
    English-like sentences for BYTES. ``shapes`` fixes variable (-1) dims per input name."""
    if model.max_batch_size > 0 and not 1 <= batch_size <= model.max_batch_size:
        raise WorkloadError(
            f"batch size {batch_size} is outside 1..{model.max_batch_size} for model '{model.name}'"
        )
    if model.max_batch_size == 0 and batch_size != 1:
        raise WorkloadError(f"model '{model.name}' does not batch (max_batch_size 0); use batch size 1")
    unknown = set(shapes or {}) - {t.name for t in model.inputs}
    if unknown:
        raise WorkloadError(f"--shape names unknown input(s) {sorted(unknown)} of model '{model.name}'")
    generator = _Generator(model, batch_size, dict(shapes or {}), seed, include_optional)
    for tensor in model.inputs:  # fail early on a missing shape
        if not tensor.optional or include_optional:
            generator.shape_of(tensor)
    return generator


def _key(inputs: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
    parts: list[Any] = []
    for name in sorted(inputs):
        array = np.asarray(inputs[name])
        body = tuple(array.ravel().tolist()) if array.dtype == object else array.tobytes()
        parts.append((name, array.dtype.str, array.shape, body))
    return tuple(parts)


def make_pool(factory: InputFactory, size: int) -> list[dict[str, np.ndarray]]:
    """``size`` distinct input sets from ``factory``: entry ``k`` is ``factory(k)``; a duplicate is an error."""
    if size < 1:
        raise WorkloadError("the request pool needs at least one entry")
    pool: list[dict[str, np.ndarray]] = []
    seen: dict[tuple[Any, ...], int] = {}
    for index in range(size):
        produced = factory(index)
        if not isinstance(produced, Mapping) or not produced:
            raise WorkloadError(
                f"the input factory returned {type(produced).__name__} for entry {index}; "
                "expected a non-empty dict of numpy arrays"
            )
        entry = {str(name): np.asarray(value) for name, value in produced.items()}
        key = _key(entry)
        if key in seen:
            raise WorkloadError(
                f"pool entries {seen[key]} and {index} have identical inputs; responses could not be told apart"
            )
        seen[key] = index
        pool.append(entry)
    return pool


def load_callable(reference: str) -> Callable[..., Any]:
    """Resolve ``"package.module:function"`` or ``"path/to/file.py:function"`` to the function."""
    module_part, sep, attribute = reference.rpartition(":")
    if not sep or not module_part or not attribute:
        raise WorkloadError(f"expected MODULE:FUNCTION or FILE.py:FUNCTION, got {reference!r}")
    if module_part.endswith(".py"):
        path = Path(module_part).resolve()
        if not path.is_file():
            raise WorkloadError(f"no such file: {path}")
        name = f"_pbkit_bench_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise WorkloadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise WorkloadError(f"{module_part} has no attribute {attribute!r}")
    if not callable(target):
        raise WorkloadError(f"{reference} is not callable")
    return target
