"""Response checks: every response is compared with what its own request should produce.

A check returns ``None`` when the response is right and a short reason when it is not; the load
generator counts such a response as an error (``mismatch``). The checks:

* :class:`EchoCheck` -- outputs equal given inputs (identity / echo models);
* :class:`ExpectedCheck` -- outputs equal a function of the inputs, within tolerance;
* :class:`ReferenceCheck` -- outputs equal those of a reference run (by default one request at a
  time on the same server, before the load starts), within tolerance;
* :class:`FunctionCheck` -- a user function decides;
* :class:`NoCheck` -- nothing is checked (non-deterministic models).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "EchoCheck",
    "ExpectedCheck",
    "FunctionCheck",
    "NoCheck",
    "ReferenceCheck",
    "ResponseCheck",
    "compare_outputs",
    "load_reference",
    "save_reference",
]

Arrays = Mapping[str, np.ndarray]


@runtime_checkable
class ResponseCheck(Protocol):
    """Decides whether ``outputs`` is the right response to pool entry ``entry`` with ``inputs``."""

    name: str

    def check(self, entry: int, inputs: Arrays, outputs: Arrays) -> str | None:
        """``None`` if right, else why not."""
        ...


def compare_outputs(
    expected: Arrays, actual: Arrays, *, rtol: float = 1e-4, atol: float = 1e-5
) -> str | None:
    """Compare each expected output with the actual one; floats within ``rtol``/``atol``, others exactly."""
    for name, want in expected.items():
        if name not in actual:
            return f"output '{name}' missing (got {sorted(actual)})"
        want = np.asarray(want)
        got = np.asarray(actual[name])
        if want.shape != got.shape:
            return f"output '{name}' has shape {list(got.shape)}, expected {list(want.shape)}"
        if want.dtype.kind == "f" or got.dtype.kind == "f":
            if got.dtype.kind not in "fiu":
                return f"output '{name}' has dtype {got.dtype}, expected {want.dtype}"
            if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
                worst = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                return f"output '{name}' differs from the expected values (max abs diff {worst:.3g})"
        elif want.dtype == object or got.dtype == object or want.dtype.kind == "S" or got.dtype.kind == "S":
            if [_as_bytes(v) for v in want.ravel()] != [_as_bytes(v) for v in got.ravel()]:
                return f"output '{name}' differs from the expected values"
        elif not np.array_equal(got, want):
            return f"output '{name}' differs from the expected values"
    return None


def _as_bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


@dataclass
class NoCheck:
    """Accepts every successful response."""

    name: str = "none"

    def check(self, entry: int, inputs: Arrays, outputs: Arrays) -> str | None:
        return None


@dataclass
class EchoCheck:
    """Each output named in ``pairs`` must equal the input it maps to (``{output: input}``).

    With no pairs, outputs are paired with inputs by position (first output with first input...).
    """

    pairs: Mapping[str, str] | None = None
    name: str = "echo"

    def check(self, entry: int, inputs: Arrays, outputs: Arrays) -> str | None:
        pairs = self.pairs if self.pairs is not None else dict(zip(outputs, inputs, strict=False))
        if not pairs:
            return "echo check: no output to compare"
        return compare_outputs({out: inputs[inp] for out, inp in pairs.items()}, outputs, rtol=0.0, atol=0.0)


@dataclass
class ExpectedCheck:
    """Outputs must match ``expected(inputs)`` (only the outputs it returns are compared)."""

    expected: Callable[[Arrays], Arrays]
    rtol: float = 1e-4
    atol: float = 1e-5
    name: str = "expected"
    _cache: dict[int, Arrays] = field(default_factory=dict, repr=False)

    def check(self, entry: int, inputs: Arrays, outputs: Arrays) -> str | None:
        want = self._cache.get(entry)
        if want is None:
            want = self._cache[entry] = dict(self.expected(inputs))
        return compare_outputs(want, outputs, rtol=self.rtol, atol=self.atol)


@dataclass
class ReferenceCheck:
    """Outputs must match the reference outputs recorded for the same pool entry.

    ``references`` is filled by the load generator's reference pass (one request at a time), or
    loaded from a file saved by an earlier run (:func:`load_reference`).
    """

    references: list[Arrays] | None = None
    rtol: float = 1e-4
    atol: float = 1e-5
    name: str = "reference"

    def check(self, entry: int, inputs: Arrays, outputs: Arrays) -> str | None:
        if self.references is None:
            raise RuntimeError("ReferenceCheck has no reference outputs; run the reference pass first")
        return compare_outputs(self.references[entry], outputs, rtol=self.rtol, atol=self.atol)


@dataclass
class FunctionCheck:
    """A user function ``fn(inputs, outputs)`` decides: ``False`` or an exception means wrong.

    A string returned is taken as the reason for a wrong response.
    """

    fn: Callable[[Arrays, Arrays], Any]
    name: str = "function"

    def check(self, entry: int, inputs: Arrays, outputs: Arrays) -> str | None:
        try:
            verdict = self.fn(inputs, outputs)
        except Exception as exc:
            return f"check raised {type(exc).__name__}: {exc}"
        if verdict is False:
            return f"check {getattr(self.fn, '__name__', 'function')} returned False"
        if isinstance(verdict, str):
            return verdict
        return None


def save_reference(path: str | Path, pool: Sequence[Arrays], references: Sequence[Arrays]) -> None:
    """Write the pool inputs and their reference outputs to an ``.npz`` file."""
    arrays: dict[str, np.ndarray] = {}
    for index, (inputs, outputs) in enumerate(zip(pool, references, strict=True)):
        for name, value in inputs.items():
            arrays[f"in/{index}/{name}"] = np.asarray(value)
        for name, value in outputs.items():
            arrays[f"out/{index}/{name}"] = np.asarray(value)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_reference(path: str | Path, pool: Sequence[Arrays]) -> list[Arrays]:
    """Read reference outputs saved by :func:`save_reference`; the saved inputs must equal ``pool``'s."""
    with np.load(path, allow_pickle=True) as data:
        saved_inputs: dict[int, dict[str, np.ndarray]] = {}
        saved_outputs: dict[int, dict[str, np.ndarray]] = {}
        for key in data.files:
            kind, index, name = key.split("/", 2)
            target = saved_inputs if kind == "in" else saved_outputs
            target.setdefault(int(index), {})[name] = data[key]
    if len(saved_outputs) < len(pool):
        raise ValueError(
            f"{path} holds references for {len(saved_outputs)} requests; the pool has {len(pool)}"
        )
    for index, inputs in enumerate(pool):
        reason = compare_outputs(saved_inputs.get(index, {}), inputs, rtol=0.0, atol=0.0)
        if reason is not None or set(saved_inputs.get(index, {})) != set(inputs):
            raise ValueError(
                f"{path}: inputs of request {index} differ from this run's (use the same seed, pool size, "
                "batch size and shapes as the run that saved it)"
            )
    return [saved_outputs.get(index, {}) for index in range(len(pool))]
