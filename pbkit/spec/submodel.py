"""Submodels: networks an orchestrator calls through BLS, with interchangeable backends.

A :class:`Submodel` declares a name, its tensors and the variants it can be served as:
a TensorRT engine in production, ONNX Runtime or TorchScript where TensorRT can't run, or a
Python-backend model that runs the same network with torch. ``pbkit build`` picks one variant
per submodel; the orchestrator's code is the same whatever the choice.

Example::

    encoder = pbkit.Submodel(
        "text_encoder",
        inputs=[pbkit.Input("input_ids", "INT32", [77])],
        outputs=[pbkit.Output("text_embeddings", "FP32", [77, 768])],
        max_batch_size=8,
        variants=[pbkit.TensorRT("engines/clip.plan"), pbkit.Onnx("onnx/clip.onnx"),
                  pbkit.PythonVariant(ClipTextEncoder)],
    )

    @pbkit.model(...)
    class Pipeline:
        text_encoder = encoder  # inside predict: self.text_encoder(input_ids=ids)["text_embeddings"]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from .declare import SPEC_ATTRIBUTE, _instance_groups, spec_of
from .model import DynamicBatching, InstanceGroup, ModelSpec
from .names import check_model_name
from .tensors import Input, Output

VariantKind = Literal["tensorrt", "onnx", "torchscript", "python"]
VARIANT_KINDS: tuple[VariantKind, ...] = ("tensorrt", "onnx", "torchscript", "python")


@dataclass(frozen=True)
class Variant:
    """One way to serve a submodel."""

    kind: ClassVar[VariantKind]
    platform: ClassVar[str] = ""
    model_filename: ClassVar[str] = ""


@dataclass(frozen=True)
class FileVariant(Variant):
    """A variant served from a file by a non-Python backend.

    ``path`` is relative to the declaring module's folder (or absolute); environment
    variables are expanded at build time.
    """

    path: str
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorRT(FileVariant):
    """A TensorRT engine (``model.plan``), built for one GPU architecture and TensorRT version."""

    kind: ClassVar[VariantKind] = "tensorrt"
    platform: ClassVar[str] = "tensorrt_plan"
    model_filename: ClassVar[str] = "model.plan"


@dataclass(frozen=True)
class Onnx(FileVariant):
    """An ONNX model served by ONNX Runtime (``model.onnx``)."""

    kind: ClassVar[VariantKind] = "onnx"
    platform: ClassVar[str] = "onnxruntime_onnx"
    model_filename: ClassVar[str] = "model.onnx"


@dataclass(frozen=True)
class TorchScript(FileVariant):
    """A TorchScript module served by the PyTorch backend (``model.pt``)."""

    kind: ClassVar[VariantKind] = "torchscript"
    platform: ClassVar[str] = "pytorch_libtorch"
    model_filename: ClassVar[str] = "model.pt"


@dataclass(frozen=True)
class PythonVariant(Variant):
    """A Python-backend model running the same network (with torch or onnxruntime).

    ``model_class`` is a plain class with ``setup(ctx)`` and ``predict(**inputs)``; it is
    declared with the submodel's own name and tensors at build time. Files it loads (weights,
    an exported ``model.onnx``) are shipped with the submodel's ``extra_files`` and found with
    ``ctx.path(relative)``.
    """

    model_class: type
    kind: ClassVar[VariantKind] = "python"


class Submodel:
    """A model called through BLS, declared once with its tensors and variants.

    Assigned as a class attribute of a pbkit model, it becomes a callable handle on each
    instance: ``self.encoder(input_features=x) -> dict[str, np.ndarray]``.
    """

    def __init__(
        self,
        name: str,
        *,
        inputs: Iterable[Input] = (),
        outputs: Iterable[Output] = (),
        max_batch_size: int = 0,
        dynamic_batching: DynamicBatching | bool | None = None,
        instances: int | InstanceGroup | Iterable[InstanceGroup] | None = None,
        variants: Iterable[Variant] = (),
        parameters: Mapping[str, Any] | None = None,
        decoupled: bool = False,
        timeout_us: int = 0,
        extra_files: Iterable[str] = (),
    ) -> None:
        check_model_name(name, what="submodel name")
        self.name = name
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.max_batch_size = max_batch_size
        if dynamic_batching is True or (dynamic_batching is None and max_batch_size > 0):
            dynamic_batching = DynamicBatching()
        self.dynamic_batching = dynamic_batching or None
        self.instance_groups = _instance_groups(instances)
        self.variants = tuple(variants)
        self.parameters = dict(parameters or {})
        self.decoupled = decoupled
        self.timeout_us = timeout_us
        self.extra_files = tuple(extra_files)
        kinds = [v.kind for v in self.variants]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"submodel {name!r}: each variant kind may appear once, got {kinds}")
        self.attribute = ""
        #: The folder of the file that declared the submodel; relative variant paths start there.
        self.declared_in: Path | None = _declaring_folder()
        self._python_class: type | None = None
        if self.variants:
            self.spec  # noqa: B018 - validate the declaration now

    @classmethod
    def of(cls, model_class: type, **options: Any) -> Submodel:
        """A typed handle on another pbkit model of the same repository."""
        spec = spec_of(model_class)
        return cls(
            spec.name,
            inputs=spec.inputs,
            outputs=spec.outputs,
            max_batch_size=spec.max_batch_size,
            decoupled=spec.decoupled,
            **options,
        )

    @property
    def typed(self) -> bool:
        return bool(self.inputs or self.outputs)

    @property
    def spec(self) -> ModelSpec:
        """The submodel's tensors and serving options, without a backend."""
        return ModelSpec(
            name=self.name,
            inputs=self.inputs,
            outputs=self.outputs,
            max_batch_size=self.max_batch_size,
            dynamic_batching=self.dynamic_batching,
            instance_groups=self.instance_groups,
            parameters=self.parameters,
            decoupled=self.decoupled,
            extra_files=self.extra_files,
        )

    def variant(self, kind: VariantKind) -> Variant | None:
        for variant in self.variants:
            if variant.kind == kind:
                return variant
        return None

    def variant_spec(self, variant: Variant) -> ModelSpec:
        """The spec a chosen variant is built with."""
        base = self.spec
        if isinstance(variant, FileVariant):
            params = {**base.parameters, **variant.parameters}
            return replace(
                base,
                backend="",
                platform=variant.platform,
                parameters=params,
                default_model_filename=variant.model_filename,
                extra_files=(),
            )
        return base

    def python_model_class(self) -> type:
        """The Python variant's class, declared with this submodel's name and tensors."""
        variant = self.variant("python")
        if not isinstance(variant, PythonVariant):
            raise ValueError(f"submodel {self.name!r} has no Python variant")
        if self._python_class is None:
            base = variant.model_class
            self._python_class = type(
                base.__name__, (base,), {"__module__": base.__module__, "__doc__": base.__doc__}
            )
            setattr(self._python_class, SPEC_ATTRIBUTE, self.spec)
        return self._python_class

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        raise RuntimeError(
            f"submodel {self.name!r} is not bound: it can be called only inside a running model "
            "(Triton or pbkit.testing.LocalTriton), or replace the attribute with a callable in unit tests"
        )

    def __repr__(self) -> str:
        kinds = ", ".join(v.kind for v in self.variants) or "reference"
        return f"Submodel({self.name!r}, variants=[{kinds}])"


def _declaring_folder() -> Path | None:
    """The folder of the first calling file outside this module (None when run from a prompt)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
    filename = frame.f_globals.get("__file__") if frame is not None else None
    return Path(filename).resolve().parent if filename else None
