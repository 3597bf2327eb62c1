"""The Python cost of pbkit's ``execute`` per request, warm and in-process, next to the minimal model.

::

    python bench/runtime_microbench.py

Runs the overhead pair's models (``bench/models/identity`` through :class:`pbkit.runtime.PbkitModel`,
and the minimal hand-written ``execute``) against a bare stand-in for ``triton_python_backend_utils``
whose calls cost next to nothing, so what is timed is the Python of each ``execute``. On a served stub
the same code runs with cold caches and real ``pb_utils`` calls: see ``bench/profile_runtime.py``.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent


class Tensor:
    __slots__ = ("_array", "_name")

    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors: Any = None, error: Any = None, parameters: Any = None) -> None:
        self.output_tensors, self.error = output_tensors, error


class TritonError:
    INVALID_ARG, INTERNAL, UNAVAILABLE = 1, 2, 3

    def __init__(self, message: str, code: int = 2) -> None:
        self.message, self.code = message, code


class Request:
    """A received request as the Python backend hands it over (the calls pbkit makes)."""

    def __init__(self, array: np.ndarray) -> None:
        self._inputs = [Tensor("INPUT", array)]

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return ["OUTPUT"]

    def request_id(self) -> str:
        return ""

    def parameters(self) -> str:
        return "{}"


def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
    for tensor in request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def install_stand_in() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    for value in (Tensor, InferenceResponse, TritonError, get_input_tensor_by_name):
        setattr(module, value.__name__, value)
    sys.modules[module.__name__] = module
    return module


def main() -> int:
    pb = install_stand_in()
    sys.path.insert(0, str(BENCH_DIR / "models" / "identity"))
    import identity_model

    from pbkit.runtime import PbkitModel

    class Pbkit(PbkitModel):
        model_class = identity_model.IdentityPbkit

    pbkit_model = Pbkit()
    pbkit_model.initialize(
        {
            "model_config": "{}",
            "model_name": "identity_pbkit",
            "model_version": "1",
            "model_instance_kind": "CPU",
            "model_instance_device_id": "0",
            "model_repository": str(BENCH_DIR),
        }
    )

    class HandWritten:
        def execute(self, requests: list[Request]) -> list[Any]:
            responses = []
            for request in requests:
                data = pb.get_input_tensor_by_name(request, "INPUT").as_numpy()
                responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor("OUTPUT", data)]))
            return responses

    array = np.ones((1, 16), np.float32)
    for count in (1, 8):
        requests = [Request(array) for _ in range(count)]
        for label, model in (("pbkit", pbkit_model), ("hand-written", HandWritten())):
            for _ in range(2000):
                model.execute(requests)
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(5000):
                    model.execute(requests)
                best = min(best, (time.perf_counter() - started) / 5000 / count * 1e6)
            print(f"{count} request(s) per execute, {label:>12}: {best:5.2f} µs per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
