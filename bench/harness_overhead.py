"""Cost of one ``LocalTriton.infer`` call on a small tensor (the add_sub example), and of its parts.

Usage: ``python bench/harness_overhead.py [--calls N] [--json PATH]``. Prints a table and writes JSON
(default ``harness_overhead.json`` in the working directory) with the median and percentiles per call, in
microseconds, for: a full ``infer`` on add_sub (no batching) and add_sub_batched (dynamic batching),
``infer_many`` per request, and the model's own ``execute`` called directly (the floor).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pbkit.testing.fake import InferenceRequest, Tensor
from pbkit.testing.local import LocalTriton

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "tests" / "fixtures" / "python_backend_examples"
DEFAULT_OUTPUT = Path("harness_overhead.json")


def timings_us(function: Callable[[], Any], calls: int, warmup: int = 200) -> list[float]:
    """Wall time of each call, in microseconds."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        function()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": round(statistics.median(ordered), 2),
        "p10_us": round(ordered[len(ordered) // 10], 2),
        "p90_us": round(ordered[(len(ordered) * 9) // 10], 2),
        "mean_us": round(statistics.fmean(ordered), 2),
        "calls": len(ordered),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    a = np.arange(4, dtype=np.float32)
    b = np.ones(4, dtype=np.float32)
    inputs = {"INPUT0": a, "INPUT1": b}
    batched = {"INPUT0": a[None], "INPUT1": b[None]}
    results: dict[str, dict[str, float]] = {}
    with LocalTriton(REPOSITORY, models=["add_sub", "add_sub_batched"]) as triton:
        assert np.array_equal(triton.infer("add_sub", inputs)["OUTPUT0"], a + b)
        results["infer add_sub"] = summary(timings_us(lambda: triton.infer("add_sub", inputs), args.calls))
        results["infer add_sub_batched"] = summary(
            timings_us(lambda: triton.infer("add_sub_batched", batched), args.calls)
        )
        many = [batched] * 8
        per_request = [
            t / len(many)
            for t in timings_us(lambda: triton.infer_many("add_sub_batched", many), args.calls // 8)
        ]
        results["infer_many add_sub_batched, per request (8 per execute)"] = summary(per_request)
        model = triton._resolve("add_sub", None).instances[0].model  # the model object itself
        request = InferenceRequest(
            model_name="add_sub",
            requested_output_names=["OUTPUT0", "OUTPUT1"],
            inputs=[Tensor("INPUT0", a), Tensor("INPUT1", b)],
        )
        results["execute only (floor)"] = summary(timings_us(lambda: model.execute([request]), args.calls))

    width = max(len(name) for name in results)
    print(f"{'':{width}}  median µs    p10    p90")
    for name, row in results.items():
        print(f"{name:{width}}  {row['median_us']:9.1f} {row['p10_us']:6.1f} {row['p90_us']:6.1f}")
    overhead = results["infer add_sub"]["median_us"] - results["execute only (floor)"]["median_us"]
    print(f"harness overhead per infer (median, add_sub): {overhead:.1f} µs")
    document = {
        "benchmark": "LocalTriton.infer overhead",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "processor": platform.processor(),
        "numpy": np.__version__,
        "results": results,
        "overhead_median_us": round(overhead, 2),
        "us_per_call": results["infer add_sub"]["median_us"],
        "summary": f"{results['infer add_sub']['median_us']:.1f} µs per LocalTriton.infer call (add_sub, median)",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
