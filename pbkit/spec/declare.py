"""The ``@pbkit.model`` decorator: a plain class becomes a declared Triton model."""

from __future__ import annotations

import abc
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, get_args, get_origin

from .model import DynamicBatching, InstanceGroup, ModelSpec, VersionPolicy, Warmup
from .tensors import Input, Output, TensorType

T = TypeVar("T", bound=type)

SPEC_ATTRIBUTE = "__pbkit_spec__"


class BatchInfo(abc.ABC):
    """Annotate a ``predict`` parameter with it to receive per-request metadata of the batch.

    The runtime passes a :class:`pbkit.runtime.batching.RequestBatch` for that parameter::

        def predict(self, X: FP32[3], batch: pbkit.BatchInfo) -> dict[str, np.ndarray]:
            ids = batch.request_ids            # one per request, in batch order
            rows = batch.row_parameters()      # one parameters dict per row of X
    """

    #: The number of rows each request brought, in batch order.
    batch_sizes: list[int]

    @property
    @abc.abstractmethod
    def parameters(self) -> list[Mapping[str, Any]]:
        """The request parameters of each request, in batch order."""

    @property
    @abc.abstractmethod
    def request_ids(self) -> list[str]:
        """The id of each request (``""`` where the client gave none), in batch order."""

    @abc.abstractmethod
    def row_parameters(self) -> list[Mapping[str, Any]]:
        """The parameters of the request each row came from, one entry per row."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of requests."""


def model(
    cls: T | None = None,
    /,
    *,
    name: str | None = None,
    inputs: Iterable[Input] | None = None,
    outputs: Iterable[Output] | None = None,
    max_batch_size: int = 0,
    dynamic_batching: DynamicBatching | bool | None = None,
    instances: int | InstanceGroup | Iterable[InstanceGroup] | None = None,
    parameters: Mapping[str, Any] | None = None,
    decoupled: bool | None = None,
    warmup: Iterable[Warmup] = (),
    version_policy: VersionPolicy | None = None,
    response_cache: bool = False,
    extra_files: Iterable[str] = (),
    version: int = 1,
    description: str | None = None,
    group_by: Iterable[str] = (),
) -> Any:
    """Declare a Triton Python-backend model from a class with a ``predict`` method.

    Inputs and outputs come from ``inputs=``/``outputs=`` or, when left out, from the
    annotations of ``predict``: parameters typed like ``FP32[4]`` become inputs (``| None``
    makes them optional) and a ``TypedDict`` return type names the outputs.

    ``predict`` always sees a batch axis first: with ``max_batch_size > 0`` it gets the
    requests concatenated along it; with ``max_batch_size=0`` (no batching) the runtime adds
    an axis of size 1 and removes it from the outputs, so the same code serves both.

    Example::

        import numpy as np
        import pbkit
        from pbkit import FP32
        from typing import TypedDict

        class Sums(TypedDict):
            SUM: FP32[4]

        @pbkit.model(max_batch_size=8)
        class AddModel:
            def predict(self, A: FP32[4], B: FP32[4]) -> Sums:
                return {"SUM": A + B}

        spec = pbkit.spec_of(AddModel)
        assert [t.name for t in spec.inputs] == ["A", "B"]
    """

    caller_locals = dict(sys._getframe(1).f_locals)

    def wrap(target: T) -> T:
        spec = _build_spec(
            target,
            local_names=caller_locals,
            name=name,
            inputs=inputs,
            outputs=outputs,
            max_batch_size=max_batch_size,
            dynamic_batching=dynamic_batching,
            instances=instances,
            parameters=parameters,
            decoupled=decoupled,
            warmup=tuple(warmup),
            version_policy=version_policy,
            response_cache=response_cache,
            extra_files=tuple(extra_files),
            version=version,
            description=description,
            group_by=tuple(group_by),
        )
        setattr(target, SPEC_ATTRIBUTE, spec)
        return target

    if cls is not None:
        return wrap(cls)
    return wrap


def spec_of(obj: Any) -> ModelSpec:
    """The :class:`ModelSpec` declared on a pbkit model class (or instance)."""
    spec = getattr(obj, SPEC_ATTRIBUTE, None)
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"{obj!r} is not a pbkit model: decorate its class with @pbkit.model")
    return spec


def is_model_class(obj: Any) -> bool:
    return inspect.isclass(obj) and isinstance(obj.__dict__.get(SPEC_ATTRIBUTE), ModelSpec)


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _build_spec(cls: type, *, local_names: Mapping[str, Any] | None = None, **options: Any) -> ModelSpec:
    predict = getattr(cls, "predict", None)
    if predict is None or not callable(predict):
        raise TypeError(f"{cls.__name__}: a pbkit model needs a predict(...) method")
    hints = _type_hints(predict, cls, local_names or {})
    signature = inspect.signature(predict)
    name = options["name"] or snake_case(cls.__name__)
    where = f"model {name!r} ({cls.__name__}.predict)"

    inputs = (
        tuple(options["inputs"]) if options["inputs"] is not None else _inputs_from(signature, hints, where)
    )
    _check_predict_accepts(signature, hints, inputs, where)
    outputs = tuple(options["outputs"]) if options["outputs"] is not None else _outputs_from(hints, where)

    max_batch_size = options["max_batch_size"]
    batching = options["dynamic_batching"]
    if batching is None or batching is True:
        batching = DynamicBatching() if max_batch_size > 0 else None
        if options["dynamic_batching"] is True and max_batch_size == 0:
            raise ValueError(f"{where}: dynamic_batching=True needs max_batch_size > 0")
    elif batching is False:
        batching = None

    decoupled = options["decoupled"]
    is_generator = inspect.isgeneratorfunction(predict) or inspect.isasyncgenfunction(predict)
    if decoupled is None:
        decoupled = is_generator
    elif decoupled != is_generator:
        kind = "a generator" if is_generator else "not a generator"
        raise TypeError(
            f"{where}: decoupled={decoupled} but predict is {kind}; decoupled models yield outputs"
        )

    description = options["description"]
    if description is None:
        description = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")

    return ModelSpec(
        name=name,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch_size,
        dynamic_batching=batching,
        instance_groups=_instance_groups(options["instances"]),
        parameters=dict(options["parameters"] or {}),
        decoupled=decoupled,
        warmup=options["warmup"],
        version_policy=options["version_policy"],
        response_cache=options["response_cache"],
        extra_files=options["extra_files"],
        version=options["version"],
        description=description,
        group_by=options["group_by"],
    )


def _type_hints(function: Callable[..., Any], cls: type, local_names: Mapping[str, Any]) -> dict[str, Any]:
    module = inspect.getmodule(cls)
    namespace = dict(vars(module)) if module else {}
    try:
        return typing.get_type_hints(
            function, globalns=namespace, localns=dict(local_names), include_extras=True
        )
    except Exception as exc:
        raise TypeError(f"{cls.__name__}.predict: cannot resolve its type annotations: {exc}") from exc


def _tensor_type(annotation: Any) -> tuple[TensorType | None, bool]:
    """Find the TensorType in an annotation; also report whether ``None`` is allowed."""
    optional = False
    origin = get_origin(annotation)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, TensorType):
            return meta, optional
    return None, optional


def _is_batch_info(annotation: Any) -> bool:
    return annotation is BatchInfo or (inspect.isclass(annotation) and issubclass(annotation, BatchInfo))


def _predict_parameters(signature: inspect.Signature) -> list[inspect.Parameter]:
    params = list(signature.parameters.values())[1:]  # drop self
    return [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _inputs_from(signature: inspect.Signature, hints: Mapping[str, Any], where: str) -> tuple[Input, ...]:
    inputs = []
    for param in _predict_parameters(signature):
        annotation = hints.get(param.name)
        if _is_batch_info(annotation):
            continue
        tensor_type, optional = _tensor_type(annotation)
        if tensor_type is None:
            raise TypeError(
                f"{where}: parameter {param.name!r} needs a tensor annotation such as FP32[4], "
                "or declare inputs=[pbkit.Input(...)] explicitly"
            )
        default = None
        if param.default is not inspect.Parameter.empty and param.default is not None:
            default = param.default
        is_optional = optional or param.default is not inspect.Parameter.empty
        inputs.append(
            Input(param.name, tensor_type.dtype, tensor_type.dims, optional=is_optional, default=default)
        )
    return tuple(inputs)


def _check_predict_accepts(
    signature: inspect.Signature, hints: Mapping[str, Any], inputs: tuple[Input, ...], where: str
) -> None:
    params = _predict_parameters(signature)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    names = {p.name for p in params}
    for tensor in inputs:
        if tensor.name not in names and not takes_kwargs:
            raise TypeError(f"{where}: input {tensor.name!r} is declared but predict has no parameter for it")
    declared = {t.name: t for t in inputs}
    for param in params:
        if _is_batch_info(hints.get(param.name)):
            continue
        if param.name not in declared:
            if param.default is inspect.Parameter.empty:
                raise TypeError(f"{where}: parameter {param.name!r} is not a declared input")
            continue
        if declared[param.name].optional and param.default is inspect.Parameter.empty:
            if declared[param.name].default is None:
                raise TypeError(
                    f"{where}: input {param.name!r} is optional, so its parameter needs a default (None)"
                )


def _outputs_from(hints: Mapping[str, Any], where: str) -> tuple[Output, ...]:
    returned = hints.get("return")
    if returned is None:
        raise TypeError(
            f"{where}: declare outputs=[pbkit.Output(...)] or annotate predict's return with a TypedDict"
        )
    origin = get_origin(returned)
    if origin is not None and origin.__name__ in ("Iterator", "Generator", "AsyncIterator", "AsyncGenerator"):
        returned = get_args(returned)[0]
    fields = typing.get_type_hints(returned, include_extras=True) if typing.is_typeddict(returned) else None
    if not fields:
        raise TypeError(
            f"{where}: the return annotation must be a TypedDict of tensor types, got {returned!r}"
        )
    outputs = []
    for field_name, annotation in fields.items():
        tensor_type, _ = _tensor_type(annotation)
        if tensor_type is None:
            raise TypeError(f"{where}: output {field_name!r} needs a tensor annotation such as FP32[4]")
        outputs.append(Output(field_name, tensor_type.dtype, tensor_type.dims))
    return tuple(outputs)


def _instance_groups(value: Any) -> tuple[InstanceGroup, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (InstanceGroup("CPU", value),)
    if isinstance(value, InstanceGroup):
        return (value,)
    return tuple(value)
