"""What an export did and how closely the exported model matches torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ExportError(Exception):
    """A module cannot be exported for a submodel (names, types, shapes or the exporter failed)."""


class ParityError(ExportError):
    """The exported model was written but does not reproduce torch within the tolerance."""

    def __init__(self, report: ExportReport) -> None:
        super().__init__(
            f"{report.kind} export of '{report.submodel}' is not within tolerance:\n{report.summary()}"
        )
        self.report = report


@dataclass(frozen=True)
class OutputDifference:
    """How one output of the exported model differs from torch's.

    ``excess`` is the largest amount by which ``|exported - torch|`` passes
    ``atol + rtol * |torch|``; an output is within tolerance when it is <= 0.
    Integer and boolean outputs must be equal.
    """

    name: str
    max_abs_error: float
    excess: float

    @property
    def within_tolerance(self) -> bool:
        return self.excess <= 0.0


@dataclass(frozen=True)
class ParityCheck:
    """One run of the exported model against torch on the same inputs."""

    label: str
    input_shapes: dict[str, tuple[int, ...]]
    outputs: tuple[OutputDifference, ...]

    @property
    def passed(self) -> bool:
        return all(o.within_tolerance for o in self.outputs)


@dataclass
class ExportReport:
    """The result of :func:`~pbkit.export.export_onnx` or :func:`~pbkit.export.export_torchscript`."""

    submodel: str
    kind: str
    path: Path
    exporter: str
    atol: float
    rtol: float
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    checks: list[ParityCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check ran within tolerance (and at least one ran)."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def max_abs_error(self) -> float:
        """The largest ``|exported - torch|`` over every output of every check."""
        return max((o.max_abs_error for c in self.checks for o in c.outputs), default=0.0)

    def summary(self) -> str:
        status = "OK" if self.passed else "FAILED"
        lines = [
            f"{self.kind} {self.path} ({self.exporter}): max |{self.kind} - torch| = {self.max_abs_error:.3g} "
            f"with atol {self.atol:g}, rtol {self.rtol:g} over {len(self.checks)} check(s): {status}"
        ]
        for check in self.checks:
            shapes = ", ".join(f"{name} {list(shape)}" for name, shape in check.input_shapes.items())
            for output in check.outputs:
                mark = "ok" if output.within_tolerance else f"exceeds tolerance by {output.excess:.3g}"
                lines.append(
                    f"  {check.label} ({shapes}): {output.name} max abs error {output.max_abs_error:.3g} {mark}"
                )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)
