"""``pbkit bench``: an async load generator for a running Triton server, with checked responses.

Typical use::

    from pbkit.bench import BenchOptions, EchoCheck, run_bench

    report = run_bench(BenchOptions("identity", concurrency=[1, 8, 32], duration=10), check=EchoCheck())
    print(report.table())
    report.write_json("identity.json")
"""

from .checks import (
    EchoCheck,
    ExpectedCheck,
    FunctionCheck,
    NoCheck,
    ReferenceCheck,
    ResponseCheck,
    compare_outputs,
    load_reference,
    save_reference,
)
from .results import BenchReport, LatencySummary, LevelResult, machine_description
from .runner import BenchError, BenchOptions, run_bench, run_bench_async
from .transport import ModelStats, Transport, TransportError, open_transport
from .workload import (
    InputFactory,
    ModelInfo,
    TensorInfo,
    WorkloadError,
    load_callable,
    make_pool,
    synthetic_inputs,
)

__all__ = [
    "BenchError",
    "BenchOptions",
    "BenchReport",
    "EchoCheck",
    "ExpectedCheck",
    "FunctionCheck",
    "InputFactory",
    "LatencySummary",
    "LevelResult",
    "ModelInfo",
    "ModelStats",
    "NoCheck",
    "ReferenceCheck",
    "ResponseCheck",
    "TensorInfo",
    "Transport",
    "TransportError",
    "WorkloadError",
    "compare_outputs",
    "load_callable",
    "load_reference",
    "machine_description",
    "make_pool",
    "open_transport",
    "run_bench",
    "run_bench_async",
    "save_reference",
    "synthetic_inputs",
]
