"""Smoke tests of ``pbkit bench`` against a real tritonserver: a few requests, every response checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pbkit.bench.workload import ModelInfo, TensorInfo, make_pool, synthetic_inputs
from pbkit.cli.main import main

pytestmark = pytest.mark.server

ECHO = ["--shape", "INPUT=8", "--check", "echo", "--no-progress"]


def bench(*args: str) -> int:
    return main(["bench", *args])


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_sweep_over_grpc_checks_every_response(bench_server: Any, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "identity.json"
    code = bench(
        "bench_identity",
        "-u",
        bench_server.grpc_url,
        "-c",
        "1,4",
        "-n",
        "40",
        "--warmup-requests",
        "4",
        *ECHO,
        "-o",
        str(out),
    )
    assert code == 0
    assert "p99 ms" in capsys.readouterr().out
    data = read(out)
    assert data["check"] == "echo" and data["protocol"] == "grpc"
    assert [level["concurrency"] for level in data["levels"]] == [1, 4]
    for level in data["levels"]:
        assert level["ok"] == level["requests"] == 40
        assert level["errors"] == 0 and level["warmup_requests"] == 4
        assert 0 < level["latency_ms"]["p50"] <= level["latency_ms"]["p90"] <= level["latency_ms"]["p99"]
        assert level["throughput_rps"] > 0
        assert level["server"]["bench_identity"]["requests"] == 40


def test_http_with_the_reference_run(bench_server: Any, tmp_path: Path) -> None:
    out = tmp_path / "identity_http.json"
    code = bench(
        "bench_identity",
        "-i",
        "http",
        "-u",
        bench_server.http_url,
        "--shape",
        "INPUT=8",
        "-c",
        "2",
        "-d",
        "1",
        "--pool",
        "16",
        "--warmup-seconds",
        "0.2",
        "--no-progress",
        "-o",
        str(out),
    )
    assert code == 0
    data = read(out)
    assert data["check"] == "reference" and data["reference_requests"] == 16
    (level,) = data["levels"]
    assert level["ok"] > 0 and level["errors"] == 0
    assert 0.9 < level["duration_s"] < 5.0


def test_responses_given_to_the_wrong_request_are_errors(bench_server: Any, tmp_path: Path) -> None:
    out = tmp_path / "mixed.json"
    code = bench("bench_mixed_up", "-u", bench_server.grpc_url, "-c", "8", "-n", "64", *ECHO, "-o", str(out))
    assert code == 1
    (level,) = read(out)["levels"]
    assert level["mismatched"] > 0 and level["ok"] + level["mismatched"] == 64
    assert any("differs from the expected values" in sample for sample in level["error_samples"])


def test_a_response_that_does_not_come_in_time_is_an_error(bench_server: Any, tmp_path: Path) -> None:
    model = ModelInfo("bench_stalls", 16, (TensorInfo("INPUT", "FP32", (-1,)),), ())
    pool = make_pool(synthetic_inputs(model, shapes={"INPUT": [8]}), 16)
    stalling = [index for index, entry in enumerate(pool[:10]) if entry["INPUT"][0, 0] > 0.0]
    assert 0 < len(stalling) < 10  # the seeded pool has both kinds among the first requests
    out = tmp_path / "stalls.json"
    code = bench(
        "bench_stalls",
        "-u",
        bench_server.grpc_url,
        "-c",
        "1",
        "-n",
        "10",
        "--pool",
        "16",
        "--timeout",
        "1",
        "--warmup-requests",
        "0",
        *ECHO,
        "-o",
        str(out),
    )
    assert code == 1
    (level,) = read(out)["levels"]
    assert level["requests"] == 10 and level["failed"] >= len(stalling)
    assert level["ok"] > 0
