"""The benchmark suite's own pieces, without servers: the batching-off copy and the report."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pbkit.build import build
from pbkit.config import read_config

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"pbkit_bench_suite_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite() -> Iterator[tuple[ModuleType, ModuleType]]:
    path = list(sys.path)
    try:
        yield _load("run"), _load("report")
    finally:
        sys.path[:] = path


def test_batching_off_copy_renames_every_step_and_drops_dynamic_batching(suite: Any, tmp_path: Path) -> None:
    run, _ = suite
    build(ROOT / "models" / "ensemble_embedding", tmp_path)
    copy = run.add_nobatch_copy(tmp_path, "embedding")
    assert copy == "embedding_nobatch"
    original = read_config(tmp_path / "embedding" / "config.pbtxt")
    ensemble = read_config(tmp_path / copy / "config.pbtxt")
    assert ensemble.name == copy and ensemble.platform == "ensemble"
    assert len(ensemble.ensemble_scheduling.step) == len(original.ensemble_scheduling.step) == 3
    for before, after in zip(
        original.ensemble_scheduling.step, ensemble.ensemble_scheduling.step, strict=True
    ):
        assert after.model_name == before.model_name + "_nobatch"
        assert dict(after.input_map) == dict(before.input_map)
        assert dict(after.output_map) == dict(before.output_map)
        step = read_config(tmp_path / after.model_name / "config.pbtxt")
        source = read_config(tmp_path / before.model_name / "config.pbtxt")
        assert source.HasField("dynamic_batching") and not step.HasField("dynamic_batching")
        assert step.name == after.model_name and step.max_batch_size == source.max_batch_size
        assert (tmp_path / after.model_name / "1" / "model.py").is_file()


def test_identity_pair_shares_one_config(suite: Any, tmp_path: Path) -> None:
    run, _ = suite
    run.build_identity_repository(tmp_path)
    pbkit_config = read_config(tmp_path / "identity_pbkit" / "config.pbtxt")
    hand_config = read_config(tmp_path / "identity_handwritten" / "config.pbtxt")
    assert hand_config.name == "identity_handwritten"
    hand_config.name = pbkit_config.name
    assert hand_config == pbkit_config
    assert "pb_utils" in (tmp_path / "identity_handwritten" / "1" / "model.py").read_text()


def test_alternating_order(suite: Any) -> None:
    run, _ = suite
    assert run.alternate(["a", "b"], 3) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b")]


def _side(throughput: float, p99: float) -> dict[str, Any]:
    return {
        "throughput": throughput,
        "p50_ms": p99 / 2,
        "p90_ms": p99 * 0.8,
        "p99_ms": p99,
        "errors": 0,
        "requests": 100,
        "cpu_us_per_request": {"stub": 50.0, "tritonserver": 100.0},
        "runs": [],
    }


def _results() -> dict[str, Any]:
    memory = [
        {
            "server": "identity server",
            "model": "identity_pbkit",
            "instance": "identity_pbkit_0",
            "rss_mib": 40.0,
        }
    ]
    return {
        "started": "2026-01-01T00:00:00+00:00",
        "duration_s": 600.0,
        "plan": {"identity_seconds": 5, "embedding_seconds": 10, "repeats": 3},
        "machine": {
            "cpus": 2,
            "processor": "CPU",
            "memory_gib": 24,
            "platform": "Linux",
            "python": "3.11",
            "tritonserver": "tritonserver 2.51",
        },
        "environment": [],
        "load_average_before": [0.5, 0.4, 0.3],
        "load_average_after": [1.5, 1.0, 0.5],
        "overhead": {
            "levels": {
                str(c): {
                    "identity_pbkit": _side(1000.0 * r, 5),
                    "identity_handwritten": _side(1000.0, 5),
                    "ratio": r,
                    "ratio_per_repeat": [r],
                }
                for c, r in ((1, 0.9), (8, 0.97), (32, 1.02))
            },
            "memory": memory,
        },
        "embedding": {
            "batching": {"concurrency": 32, "on": _side(150.0, 400), "off": _side(50.0, 900), "gain": 3.0},
            "encoder_batches": {"executions": {"4": 10, "32": 5}, "infer_ms": {"4": 200.0, "32": 1000.0}},
            "pytriton": {"32": {"pbkit": _side(150.0, 400), "pytriton": _side(120.0, 500), "ratio": 1.25}},
            "memory": [],
        },
        "limit": {
            "limit_sentences_per_s": 200.0,
            "ensemble_sentences_per_s": 150.0,
            "ratio": 0.75,
            "torch_threads": 2,
            "forward_ms": {"4": 15.0, "32": 150.0},
            "server_encoder_ms": {"4": 20.0, "32": 200.0},
            "executions": {"4": 10, "32": 5},
            "paired_ratio_per_repeat": [0.7, 0.75, 0.8],
        },
        "harness": {"missing": "bench/harness_overhead.py does not exist"},
    }


def test_report_states_each_target_and_draws_the_plots(suite: Any, tmp_path: Path) -> None:
    _, report = suite
    page = report.write_report(_results(), tmp_path).read_text()
    assert "| 0.90 / 0.97 / 1.02 | ≥ 0.95 | **no** |" in page
    assert "3.00x (150.0 vs 50.0 sentences/s) | ≥ 2x | yes |" in page
    assert "0.75 (150.0 vs 200.0 sentences/s) | ≥ 0.8 | **no** |" in page
    assert "right after it (mean forward times): 0.70, 0.75, 0.80." in page
    assert "1.25x (400 vs 500 ms) | ≥ 1x, p99 no worse | yes |" in page
    assert "2 CPU cores" in page and "no GPU" in page
    for name in ("overhead", "batching", "limit", "pytriton", "memory"):
        assert f"(benchmarks/{name}.png)" in page
        assert (tmp_path / "benchmarks" / f"{name}.png").stat().st_size > 1000
