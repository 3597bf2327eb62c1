"""The model declaration: one :class:`ModelSpec` is the source of every generated artefact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .dtypes import DataType
from .names import check_model_name, check_parameter_name
from .tensors import Dims, Input, Output, normalize_dims

InstanceKind = Literal["CPU", "GPU", "AUTO", "MODEL"]


@dataclass(frozen=True)
class QueuePolicy:
    """How the dynamic batcher's queue treats waiting requests."""

    timeout_action: Literal["REJECT", "DELAY"] = "REJECT"
    default_timeout_us: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0


@dataclass(frozen=True)
class DynamicBatching:
    """Dynamic batching: Triton groups queued requests into one ``execute`` call."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    queue_policy: QueuePolicy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "preferred_batch_sizes", tuple(int(s) for s in self.preferred_batch_sizes))
        if any(s < 1 for s in self.preferred_batch_sizes):
            raise ValueError(
                f"preferred_batch_sizes must be positive, got {list(self.preferred_batch_sizes)}"
            )
        if self.max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")


@dataclass(frozen=True)
class InstanceGroup:
    """A group of model instances: ``count`` copies on ``kind`` (and ``gpus`` for GPU)."""

    kind: InstanceKind = "CPU"
    count: int = 1
    gpus: tuple[int, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        kind = str(self.kind).upper().removeprefix("KIND_")
        if kind not in ("CPU", "GPU", "AUTO", "MODEL"):
            raise ValueError(f"instance kind must be CPU, GPU, AUTO or MODEL, got {self.kind!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "gpus", tuple(int(g) for g in self.gpus))
        if self.count < 1:
            raise ValueError(f"instance count must be >= 1, got {self.count}")
        if self.gpus and kind != "GPU":
            raise ValueError(f"gpus {list(self.gpus)} given for a {kind} instance group; use kind='GPU'")


@dataclass(frozen=True)
class WarmupInput:
    """One input of a warmup sample: zeros or random data of a given type and shape."""

    dtype: DataType
    dims: Dims
    fill: Literal["zero", "random"] = "zero"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", DataType.parse(self.dtype))
        object.__setattr__(self, "dims", normalize_dims(self.dims, what="warmup input"))


@dataclass(frozen=True)
class Warmup:
    """A warmup sample Triton runs before the model is marked ready."""

    name: str
    inputs: Mapping[str, WarmupInput]
    batch_size: int = 1
    count: int = 1


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions Triton serves: the ``latest`` N, ``all``, or ``specific`` ones."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    @classmethod
    def latest(cls, num_versions: int = 1) -> VersionPolicy:
        return cls("latest", num_versions=num_versions)

    @classmethod
    def all(cls) -> VersionPolicy:
        return cls("all")

    @classmethod
    def specific(cls, *versions: int) -> VersionPolicy:
        return cls("specific", versions=tuple(versions))


@dataclass(frozen=True)
class ModelSpec:
    """Everything Triton needs to know about a model, declared once.

    ``backend`` is ``"python"`` for pbkit models; submodels served by other backends set
    ``platform`` (``tensorrt_plan``, ``onnxruntime_onnx``, ``pytorch_libtorch``) instead.
    """

    name: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    max_batch_size: int = 0
    dynamic_batching: DynamicBatching | None = None
    instance_groups: tuple[InstanceGroup, ...] = ()
    parameters: Mapping[str, str] = field(default_factory=dict)
    decoupled: bool = False
    warmup: tuple[Warmup, ...] = ()
    version_policy: VersionPolicy | None = None
    response_cache: bool = False
    extra_files: tuple[str, ...] = ()
    version: int = 1
    description: str = ""
    backend: str = "python"
    platform: str = ""
    default_model_filename: str = ""
    group_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_model_name(self.name)
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "instance_groups", tuple(self.instance_groups))
        object.__setattr__(self, "extra_files", tuple(self.extra_files))
        object.__setattr__(self, "group_by", tuple(self.group_by))
        params = {}
        for key, value in dict(self.parameters).items():
            check_parameter_name(key)
            params[key] = value if isinstance(value, str) else _parameter_string(key, value)
        object.__setattr__(self, "parameters", params)
        self._validate()

    def _validate(self) -> None:
        where = f"model {self.name!r}"
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 0:
            raise ValueError(f"{where}: max_batch_size must be an int >= 0, got {self.max_batch_size!r}")
        if self.dynamic_batching is not None and self.max_batch_size == 0:
            raise ValueError(f"{where}: dynamic_batching needs max_batch_size > 0")
        if self.dynamic_batching is not None:
            too_big = [s for s in self.dynamic_batching.preferred_batch_sizes if s > self.max_batch_size]
            if too_big:
                raise ValueError(
                    f"{where}: preferred_batch_sizes {too_big} exceed max_batch_size {self.max_batch_size}"
                )
        if not self.outputs and self.backend == "python" and not self.platform:
            raise ValueError(f"{where}: declare at least one output")
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            seen: set[str] = set()
            for tensor in tensors:
                if tensor.name in seen:
                    raise ValueError(f"{where}: duplicate {kind} name {tensor.name!r}")
                seen.add(tensor.name)
                if self.max_batch_size == 0 and not tensor.dims:
                    raise ValueError(
                        f"{where}: {kind} {tensor.name!r} has no dims; with max_batch_size 0 declare at least [1]"
                    )
        for tensor in self.outputs:
            if not isinstance(tensor, Output):
                raise TypeError(f"{where}: outputs must be pbkit.Output, got {type(tensor).__name__}")
        for tensor in self.inputs:
            if not isinstance(tensor, Input):
                raise TypeError(f"{where}: inputs must be pbkit.Input, got {type(tensor).__name__}")
        names = {t.name for t in self.inputs}
        for key in self.group_by:
            if key not in names:
                raise ValueError(f"{where}: group_by names {key!r}, which is not an input")
        for warm in self.warmup:
            unknown = set(warm.inputs) - names
            if unknown:
                raise ValueError(f"{where}: warmup {warm.name!r} sets unknown inputs {sorted(unknown)}")
        if self.version < 1:
            raise ValueError(f"{where}: version must be >= 1, got {self.version}")

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    def input(self, name: str) -> Input:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"model {self.name!r} has no input {name!r}")

    def output(self, name: str) -> Output:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"model {self.name!r} has no output {name!r}")


def _parameter_string(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    raise ValueError(f"parameter {key!r}: values must be str, int, float or bool, got {type(value).__name__}")


def as_sequence(value: Any) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return value
    return (value,)
