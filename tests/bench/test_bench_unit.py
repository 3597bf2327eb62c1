"""``pbkit bench`` without a server: inputs, checks, statistics, reports, CLI parsing, and the load
generator itself over in-memory transports that answer right, mix responses up, or fail."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pbkit.bench import (
    BenchError,
    BenchOptions,
    EchoCheck,
    ExpectedCheck,
    FunctionCheck,
    LatencySummary,
    ModelInfo,
    ModelStats,
    NoCheck,
    ReferenceCheck,
    TensorInfo,
    Transport,
    TransportError,
    WorkloadError,
    compare_outputs,
    load_callable,
    load_reference,
    make_pool,
    run_bench,
    save_reference,
    synthetic_inputs,
)
from pbkit.cli.bench import parse_concurrency

CONFIG = {
    "name": "echo",
    "max_batch_size": 8,
    "input": [{"name": "INPUT", "data_type": "TYPE_FP32", "dims": ["-1"]}],
    "output": [{"name": "OUTPUT", "data_type": "TYPE_FP32", "dims": ["-1"]}],
    "backend": "python",
}


class MemoryTransport(Transport):
    """Answers ``OUTPUT = INPUT`` after ``delay`` seconds; ``swap`` gives each of two concurrent
    requests the other's answer (requests then come in pairs); ``fail_every`` makes every n-th
    request fail."""

    protocol = "memory"

    def __init__(self, *, delay: float = 0.0, swap: bool = False, fail_every: int = 0) -> None:
        super().__init__("memory", 1.0)
        self.delay = delay
        self.swap = swap
        self.fail_every = fail_every
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self._waiting: list[tuple[Mapping[str, np.ndarray], asyncio.Future[Any]]] = []
        self.stats = ModelStats()

    async def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        if model != "echo":
            raise TransportError(f"Request for unknown model: '{model}' is not found", "NOT_FOUND")
        return {"config": CONFIG}

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        return dict(inputs)

    async def infer(self, model: str, prepared: Any, request_id: str, version: str = "") -> Any:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.fail_every and self.calls % self.fail_every == 0:
                raise TransportError("[StatusCode.INTERNAL] model failed", "INTERNAL")
            await asyncio.sleep(self.delay)
            self.stats.execution_count += 1
            self.stats.success_count += 1
            if not self.swap:
                return {"OUTPUT": prepared["INPUT"]}, request_id
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting.append((prepared, future))
            if len(self._waiting) == 2:
                (first, first_future), (second, second_future) = self._waiting
                self._waiting.clear()
                first_future.set_result({"OUTPUT": second["INPUT"]})
                second_future.set_result({"OUTPUT": first["INPUT"]})
            return await future, request_id
        finally:
            self.in_flight -= 1

    async def _statistics_json(self) -> list[Mapping[str, Any]]:
        return []

    async def statistics(self) -> dict[str, ModelStats]:
        return {"echo": ModelStats(**{**self.stats.__dict__})}

    async def close(self) -> None:
        pass


def options(**overrides: Any) -> BenchOptions:
    values: dict[str, Any] = {
        "model": "echo",
        "shapes": {"INPUT": [4]},
        "requests": 20,
        "duration": None,
        "warmup_requests": 3,
        "warmup_seconds": None,
        "progress": False,
        "pool_size": 16,
    }
    values.update(overrides)
    return BenchOptions(**values)


# ----------------------------------------------------------------------------- the load generator
def test_each_level_sends_its_requests_at_its_concurrency_and_checks_them() -> None:
    transport = MemoryTransport(delay=0.002)
    report = run_bench(options(concurrency=[1, 4]), check=EchoCheck(), transport=transport)
    assert [level.concurrency for level in report.levels] == [1, 4]
    for level in report.levels:
        assert (level.requests, level.ok, level.errors, level.warmup_requests) == (20, 20, 0, 3)
        assert level.rows == 20 and level.duration_s > 0 and level.throughput > 0
        assert level.latency_ms.p50 >= 2.0
        assert level.server["echo"]["requests"] == 20
    assert transport.calls == 2 * (20 + 3)
    assert transport.most_in_flight == 4
    assert report.errors == 0 and report.check == "echo"


def test_duration_bounds_a_level() -> None:
    transport = MemoryTransport(delay=0.01)
    report = run_bench(
        options(requests=None, duration=0.3, concurrency=[2]), check=NoCheck(), transport=transport
    )
    (level,) = report.levels
    assert 0.3 <= level.duration_s < 1.5
    assert 4 <= level.requests <= 62  # at most 2 workers x 0.3 s / 10 ms per request, plus the two in flight


def test_the_first_bound_reached_ends_the_level() -> None:
    report = run_bench(
        options(requests=5, duration=30.0, concurrency=[1]), check=NoCheck(), transport=MemoryTransport()
    )
    assert report.levels[0].requests == 5


def test_swapped_responses_are_mismatches() -> None:
    report = run_bench(
        options(concurrency=[2], warmup_requests=4), check=EchoCheck(), transport=MemoryTransport(swap=True)
    )
    (level,) = report.levels
    assert level.mismatched == 20 and level.ok == 0 and report.errors == 20
    assert "differs from the expected values" in level.error_samples[0]


def test_reference_pass_catches_swapped_responses_too() -> None:
    # The reference pass sends one request at a time (answered alone, so right); the load is not.
    transport = MemoryTransport(swap=False)
    check = ReferenceCheck()
    report = run_bench(options(concurrency=[2]), check=check, transport=transport)
    assert report.reference_requests == 16 and report.levels[0].ok == 20
    transport.swap = True
    again = run_bench(options(concurrency=[2], warmup_requests=4), check=check, transport=transport)
    assert again.levels[0].mismatched == 20


def test_failed_requests_are_counted_with_their_message() -> None:
    report = run_bench(
        options(concurrency=[1], warmup_requests=0),
        check=EchoCheck(),
        transport=MemoryTransport(fail_every=4),
    )
    (level,) = report.levels
    assert (level.failed, level.ok) == (5, 15)
    assert "model failed" in level.error_samples[0]


def test_a_response_with_another_request_id_is_a_mismatch() -> None:
    class WrongIds(MemoryTransport):
        async def infer(self, model: str, prepared: Any, request_id: str, version: str = "") -> Any:
            outputs, _ = await super().infer(model, prepared, request_id, version)
            return outputs, "7"

    report = run_bench(options(concurrency=[1], warmup_requests=0), check=EchoCheck(), transport=WrongIds())
    assert report.levels[0].mismatched == 19  # request 7 carries its own id
    assert "request id '7'" in report.levels[0].error_samples[0]


def test_unknown_model_is_a_bench_error() -> None:
    with pytest.raises(BenchError, match="cannot read the config of model 'nope'"):
        run_bench(options(model="nope"), transport=MemoryTransport())


def test_options_are_validated() -> None:
    for bad in (
        {"concurrency": [0]},
        {"requests": None, "duration": None},
        {"requests": 0},
        {"duration": -1.0},
        {"protocol": "smtp"},
    ):
        with pytest.raises(BenchError):
            options(**bad).validate()


def test_report_table_and_json(tmp_path: Path) -> None:
    report = run_bench(options(concurrency=[1]), check=EchoCheck(), transport=MemoryTransport())
    path = tmp_path / "out" / "report.json"
    report.write_json(path)
    text = path.read_text()
    assert '"throughput_rps"' in text and '"p99"' in text and '"cpus"' in text
    assert "p50 ms" in report.table() and "echo" in report.table()


# ----------------------------------------------------------------------------- inputs
def test_config_json_of_both_protocols_is_read() -> None:
    model = ModelInfo.from_config({"config": CONFIG})
    assert model.max_batch_size == 8
    assert model.inputs == (TensorInfo("INPUT", "FP32", (-1,)),)
    text = ModelInfo.from_config(
        {"name": "t", "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1], "optional": True}]}
    )
    assert text.max_batch_size == 0 and text.inputs[0] == TensorInfo("TEXT", "BYTES", (1,), optional=True)


def test_synthetic_inputs_are_seeded_distinct_and_shaped() -> None:
    model = ModelInfo(
        "m",
        8,
        (TensorInfo("A", "FP16", (2, -1)), TensorInfo("T", "BYTES", (1,)), TensorInfo("K", "INT32", (3,))),
        (),
    )
    factory = synthetic_inputs(model, batch_size=2, shapes={"A": [2, 5]}, seed=3)
    first, again = factory(0), synthetic_inputs(model, batch_size=2, shapes={"A": [2, 5]}, seed=3)(0)
    assert first["A"].shape == (2, 2, 5) and first["A"].dtype == np.float16
    assert first["T"].shape == (2, 1) and isinstance(first["T"][0, 0], bytes)
    assert first["T"][0, 0].decode().endswith(".")
    assert first["K"].dtype == np.int32 and first["K"].min() >= 0 and first["K"].max() < 100
    np.testing.assert_array_equal(first["A"], again["A"])
    assert not np.array_equal(first["A"], factory(1)["A"])
    assert len(make_pool(factory, 50)) == 50


def test_variable_dims_need_a_shape() -> None:
    model = ModelInfo.from_config({"config": CONFIG})
    with pytest.raises(WorkloadError, match="--shape INPUT=16"):
        synthetic_inputs(model)
    with pytest.raises(WorkloadError, match="does not fit"):
        synthetic_inputs(model, shapes={"INPUT": [4, 4]})
    with pytest.raises(WorkloadError, match=r"outside 1\.\.8"):
        synthetic_inputs(model, shapes={"INPUT": [4]}, batch_size=9)
    with pytest.raises(WorkloadError, match="unknown input"):
        synthetic_inputs(model, shapes={"OTHER": [4]})


def test_pool_refuses_identical_entries() -> None:
    with pytest.raises(WorkloadError, match="identical inputs"):
        make_pool(lambda index: {"X": np.zeros((1, 2), np.float32)}, 3)


def test_load_callable_from_a_file_and_a_module(tmp_path: Path) -> None:
    source = tmp_path / "my_checks.py"
    source.write_text("def positive(inputs, outputs):\n    return bool((outputs['Y'] > 0).all())\n")
    positive = load_callable(f"{source}:positive")
    assert positive({}, {"Y": np.ones(2)}) is True
    assert load_callable("os.path:join")("a", "b") == "a/b"
    with pytest.raises(WorkloadError):
        load_callable("no_colon_here")


# ----------------------------------------------------------------------------- checks
def test_compare_outputs() -> None:
    base = {"F": np.array([[1.0, 2.0]], np.float32), "B": np.array([[b"x"]], dtype=object)}
    assert compare_outputs(base, {"F": base["F"] + 1e-7, "B": np.array([[b"x"]], dtype=object)}) is None
    assert "max abs diff" in str(compare_outputs(base, {"F": base["F"] + 1.0, "B": base["B"]}))
    assert "shape" in str(compare_outputs(base, {"F": base["F"][:, :1], "B": base["B"]}))
    assert "missing" in str(compare_outputs(base, {"F": base["F"]}))
    assert compare_outputs(base, {"F": base["F"], "B": np.array([[b"y"]], dtype=object)}) is not None
    assert compare_outputs({"I": np.array([1, 2])}, {"I": np.array([1, 3])}) is not None


def test_echo_expected_and_function_checks() -> None:
    inputs = {"INPUT": np.array([[1.0, 2.0]], np.float32)}
    assert EchoCheck().check(0, inputs, {"OUTPUT": inputs["INPUT"].copy()}) is None
    assert EchoCheck({"OUTPUT": "INPUT"}).check(0, inputs, {"OUTPUT": inputs["INPUT"] * 2}) is not None
    doubled = ExpectedCheck(lambda given: {"OUTPUT": given["INPUT"] * 2})
    assert doubled.check(0, inputs, {"OUTPUT": inputs["INPUT"] * 2}) is None
    assert doubled.check(0, inputs, {"OUTPUT": inputs["INPUT"]}) is not None
    assert FunctionCheck(lambda i, o: False).check(0, inputs, {}) is not None
    assert FunctionCheck(lambda i, o: "too small").check(0, inputs, {}) == "too small"
    assert "KeyError" in str(FunctionCheck(lambda i, o: o["missing"]).check(0, inputs, {}))
    assert FunctionCheck(lambda i, o: None).check(0, inputs, {}) is None


def test_references_round_trip_and_must_match_the_pool(tmp_path: Path) -> None:
    pool = [{"X": np.full((1, 2), i, np.float32)} for i in range(3)]
    outputs = [{"Y": entry["X"] * 10} for entry in pool]
    path = tmp_path / "ref.npz"
    save_reference(path, pool, outputs)
    loaded = load_reference(path, pool)
    np.testing.assert_array_equal(loaded[2]["Y"], outputs[2]["Y"])
    with pytest.raises(ValueError, match="inputs of request 1 differ"):
        load_reference(path, [pool[0], {"X": np.zeros((1, 2), np.float32)}, pool[2]])


# ----------------------------------------------------------------------------- statistics and CLI
def test_statistics_delta_and_summary() -> None:
    entry = {
        "name": "m",
        "version": "1",
        "inference_count": "30",
        "execution_count": "10",
        "inference_stats": {"success": {"count": "20", "ns": "1"}, "queue": {"count": "20", "ns": "4000000"}},
        "batch_stats": [{"batch_size": "1", "compute_infer": {"count": "5", "ns": "5000000"}}],
    }

    class Fixed(MemoryTransport):
        async def _statistics_json(self) -> list[Mapping[str, Any]]:
            return [entry]

    stats = asyncio.run(Transport.statistics(Fixed()))["m"]
    summary = stats.minus(ModelStats(inference_count=10, execution_count=5, success_count=10)).to_json()
    assert summary["requests"] == 10 and summary["rows"] == 20 and summary["mean_batch_rows"] == 4.0
    assert summary["batch_executions"] == {"1": 5}
    assert summary["queue_ms_per_request"] == pytest.approx(0.4)


def test_latency_summary() -> None:
    summary = LatencySummary.of([0.001 * i for i in range(1, 101)])
    assert summary.p50 == pytest.approx(50.5) and summary.p99 == pytest.approx(99.01)
    assert summary.min == pytest.approx(1.0) and summary.max == pytest.approx(100.0)
    assert LatencySummary.of([]).p99 == 0.0


def test_concurrency_lists_and_sweeps() -> None:
    assert parse_concurrency("1,8,32") == [1, 8, 32]
    assert parse_concurrency("1:32") == [1, 2, 4, 8, 16, 32]
    assert parse_concurrency("3:20") == [3, 6, 12, 20]
    for bad in ("0", "8:2", "a", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_concurrency(bad)
