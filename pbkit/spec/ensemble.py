"""Ensembles: chain declared models by tensor name, checked when they are declared.

Example::

    embed = pbkit.Ensemble(
        "embed",
        steps=[Tokenizer, encoder, pbkit.Step(Pooling, outputs={"embedding": "EMBEDDING"})],
    )

Each step's inputs are wired to the ensemble input or the earlier step output with the same
name; ``Step(model, inputs={step_input: tensor}, outputs={step_output: tensor})`` renames.
The ensemble's inputs are the tensors no step produces; its outputs, unless given, are the
tensors the last step produces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .declare import is_model_class, spec_of
from .model import ModelSpec
from .names import check_model_name
from .tensors import Input, Output, TensorSpec


class EnsembleError(ValueError):
    """An ensemble's wiring is wrong; the message names the step and the tensor."""


@dataclass(frozen=True)
class Step:
    """One model in an ensemble, with optional renames of its tensors."""

    model: Any
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return step_spec(self.model)


def step_spec(model: Any) -> ModelSpec:
    """The spec of a step: a pbkit model class, a Submodel, an Ensemble or a ModelSpec."""
    if isinstance(model, ModelSpec):
        return model
    if is_model_class(model):
        return spec_of(model)
    spec = getattr(model, "spec", None)
    if isinstance(spec, ModelSpec):
        return spec
    raise TypeError(f"ensemble step {model!r} is not a pbkit model, Submodel or Ensemble")


@dataclass(frozen=True)
class Wire:
    """A resolved step: its model name and both maps (model tensor -> ensemble tensor)."""

    model_name: str
    input_map: dict[str, str]
    output_map: dict[str, str]


class Ensemble:
    """A Triton ensemble (``platform: "ensemble"``) composed from declared models."""

    def __init__(
        self,
        name: str,
        steps: Sequence[Any],
        *,
        inputs: Iterable[Input] | None = None,
        outputs: Iterable[Output] | None = None,
        max_batch_size: int | None = None,
        description: str = "",
    ) -> None:
        check_model_name(name, what="ensemble name")
        self.name = name
        self.steps = [s if isinstance(s, Step) else Step(s) for s in steps]
        if not self.steps:
            raise EnsembleError(f"ensemble {name!r}: declare at least one step")
        self.description = description
        self._declared_inputs = tuple(inputs) if inputs is not None else None
        self._declared_outputs = tuple(outputs) if outputs is not None else None
        self._max_batch_size = max_batch_size
        self.wires, self.spec = self._resolve()

    @property
    def step_specs(self) -> list[ModelSpec]:
        return [s.spec for s in self.steps]

    def _resolve(self) -> tuple[list[Wire], ModelSpec]:
        where = f"ensemble {self.name!r}"
        specs = [step.spec for step in self.steps]
        batch_sizes = {spec.name: spec.max_batch_size for spec in specs}
        max_batch_size = (
            self._max_batch_size if self._max_batch_size is not None else min(batch_sizes.values())
        )
        for spec in specs:
            if max_batch_size > 0 and spec.max_batch_size == 0:
                raise EnsembleError(
                    f"{where}: step '{spec.name}' does not batch (max_batch_size 0) but the ensemble has "
                    f"max_batch_size {max_batch_size}"
                )
            if spec.max_batch_size < max_batch_size:
                raise EnsembleError(
                    f"{where}: step '{spec.name}' has max_batch_size {spec.max_batch_size}, smaller than the "
                    f"ensemble's {max_batch_size}"
                )
            if spec.decoupled:
                raise EnsembleError(
                    f"{where}: step '{spec.name}' is decoupled; pbkit ensembles chain non-decoupled models"
                )
        batching = [spec for spec in specs if spec.max_batch_size > 0]
        if max_batch_size == 0 and batching:
            _reject_mixed_batching(where, self.steps, specs, batching[0])

        producers: dict[str, tuple[str, TensorSpec]] = {}
        for step, spec in zip(self.steps, specs, strict=True):
            for tensor in spec.outputs:
                target = step.outputs.get(tensor.name, tensor.name)
                if target in producers:
                    raise EnsembleError(
                        f"{where}: tensor '{target}' is produced by both step '{producers[target][0]}' and "
                        f"step '{spec.name}'"
                    )
                producers[target] = (spec.name, tensor)
            for key in step.outputs:
                if key not in {t.name for t in spec.outputs}:
                    raise EnsembleError(f"{where}: step '{spec.name}' has no output '{key}' to rename")
            for key in step.inputs:
                if key not in {t.name for t in spec.inputs}:
                    raise EnsembleError(f"{where}: step '{spec.name}' has no input '{key}' to rename")

        declared_inputs = {t.name: t for t in self._declared_inputs or ()}
        ensemble_inputs: dict[str, Input] = dict(declared_inputs)
        for step, spec in zip(self.steps, specs, strict=True):
            for tensor in spec.inputs:
                source = step.inputs.get(tensor.name, tensor.name)
                if source in producers:
                    continue
                if source in declared_inputs:
                    _check_compatible(
                        where, spec.name, tensor, source, declared_inputs[source], "ensemble input"
                    )
                    continue
                if tensor.optional:
                    continue
                if self._declared_inputs is not None:
                    raise EnsembleError(
                        f"{where}: input '{tensor.name}' of step '{spec.name}' is neither an ensemble input nor "
                        f"produced by an earlier step (looked for tensor '{source}')"
                    )
                if source in ensemble_inputs:
                    _check_compatible(
                        where, spec.name, tensor, source, ensemble_inputs[source], "ensemble input"
                    )
                    continue
                ensemble_inputs[source] = Input(source, tensor.dtype, tensor.dims)

        order = self._order(specs, producers, set(ensemble_inputs), where)
        for index in order:
            step, spec = self.steps[index], specs[index]
            for tensor in spec.inputs:
                source = step.inputs.get(tensor.name, tensor.name)
                if source in producers:
                    _check_compatible(
                        where,
                        spec.name,
                        tensor,
                        source,
                        producers[source][1],
                        f"output of step '{producers[source][0]}'",
                    )

        if self._declared_outputs is not None:
            outputs = []
            for tensor in self._declared_outputs:
                if tensor.name not in producers:
                    raise EnsembleError(
                        f"{where}: ensemble output '{tensor.name}' is not produced by any step"
                    )
                producer, produced = producers[tensor.name]
                if produced.dtype is not tensor.dtype or not _dims_compatible(produced.dims, tensor.dims):
                    raise EnsembleError(
                        f"{where}: ensemble output '{tensor.name}' is declared {tensor.describe()} but step "
                        f"'{producer}' produces {produced.describe()}"
                    )
                outputs.append(tensor)
        else:
            last = self.steps[order[-1]]
            outputs = [
                Output(last.outputs.get(t.name, t.name), t.dtype, t.dims) for t in specs[order[-1]].outputs
            ]
        wires = []
        for index in order:
            step, spec = self.steps[index], specs[index]
            input_map = {}
            for tensor in spec.inputs:
                source = step.inputs.get(tensor.name, tensor.name)
                if source in producers or source in ensemble_inputs:
                    input_map[tensor.name] = source
            output_map = {t.name: step.outputs.get(t.name, t.name) for t in spec.outputs}
            wires.append(Wire(spec.name, input_map, output_map))
        spec = ModelSpec(
            name=self.name,
            inputs=tuple(ensemble_inputs.values()),
            outputs=tuple(outputs),
            max_batch_size=max_batch_size,
            backend="",
            platform="ensemble",
            description=self.description,
        )
        return wires, spec

    def _order(
        self,
        specs: list[ModelSpec],
        producers: Mapping[str, tuple[str, TensorSpec]],
        available: set[str],
        where: str,
    ) -> list[int]:
        """Steps in an order where every input exists before it is used; raises on cycles."""
        remaining = list(range(len(specs)))
        ready = set(available)
        order: list[int] = []
        while remaining:
            progressed = False
            for index in list(remaining):
                step, spec = self.steps[index], specs[index]
                sources = [step.inputs.get(t.name, t.name) for t in spec.inputs]
                needed = [s for s in sources if s in producers]
                if all(s in ready for s in needed):
                    order.append(index)
                    remaining.remove(index)
                    ready.update(step.outputs.get(t.name, t.name) for t in spec.outputs)
                    progressed = True
            if not progressed:
                waits = []
                for index in remaining:
                    step, spec = self.steps[index], specs[index]
                    for tensor in spec.inputs:
                        source = step.inputs.get(tensor.name, tensor.name)
                        if source in producers and source not in ready:
                            waits.append(
                                f"step '{spec.name}' waits for tensor '{source}' from step '{producers[source][0]}'"
                            )
                names = ", ".join(f"'{specs[i].name}'" for i in remaining)
                raise EnsembleError(f"{where}: steps {names} form a cycle: " + "; ".join(waits))
        return order


def _reject_mixed_batching(
    where: str, steps: Sequence[Step], specs: Sequence[ModelSpec], batching: ModelSpec
) -> None:
    """Raise for an ensemble without batching whose steps batch (all of them or some).

    Triton accepts such configs when the dims match without the batch dimension, but the
    batching step then reads the ensemble's first dimension as its batch, so requests fail.
    """
    non_batching = {spec.name for spec in specs if spec.max_batch_size == 0}
    if not non_batching:
        raise EnsembleError(
            f"{where}: the ensemble has max_batch_size 0 but its steps batch (step '{batching.name}' has "
            f"max_batch_size {batching.max_batch_size}); leave max_batch_size unset or give a value from 1 "
            f"to {min(spec.max_batch_size for spec in specs)}"
        )
    produced_by = {
        step.outputs.get(tensor.name, tensor.name): spec
        for step, spec in zip(steps, specs, strict=True)
        for tensor in spec.outputs
    }
    for step, spec in zip(steps, specs, strict=True):
        for tensor in spec.inputs:
            source = step.inputs.get(tensor.name, tensor.name)
            producer = produced_by.get(source)
            if producer is not None and (producer.name in non_batching) != (spec.name in non_batching):
                raise EnsembleError(
                    f"{where}: step '{spec.name}' (max_batch_size {spec.max_batch_size}) takes tensor "
                    f"'{source}' from step '{producer.name}' (max_batch_size {producer.max_batch_size}); "
                    "the steps of an ensemble must all batch or all not batch"
                )
    other = next(spec for spec in specs if spec.name in non_batching)
    raise EnsembleError(
        f"{where}: step '{other.name}' does not batch (max_batch_size 0) but step '{batching.name}' does "
        f"(max_batch_size {batching.max_batch_size}); the steps of an ensemble must all batch or all not batch"
    )


def _dims_compatible(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def _check_compatible(
    where: str, step: str, consumer: TensorSpec, source: str, producer: TensorSpec, origin: str
) -> None:
    if consumer.dtype is not producer.dtype:
        raise EnsembleError(
            f"{where}: step '{step}' input '{consumer.name}' expects {consumer.dtype.value}, but tensor "
            f"'{source}' ({origin}) is {producer.dtype.value}"
        )
    if not _dims_compatible(consumer.dims, producer.dims):
        raise EnsembleError(
            f"{where}: step '{step}' input '{consumer.name}' expects dims {list(consumer.dims)}, but tensor "
            f"'{source}' ({origin}) has dims {list(producer.dims)}"
        )
