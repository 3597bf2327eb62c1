"""What a benchmark measured: per-concurrency results, latency percentiles, JSON and a text table."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchReport", "LatencySummary", "LevelResult", "machine_description"]

_MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LatencySummary:
    """Latency of successful requests, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        """Summarise latencies given in seconds (all zeros when there are none)."""
        if not len(seconds):
            return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()), float(ms.min()), float(ms.max()))


@dataclass
class LevelResult:
    """One measured phase at a fixed concurrency."""

    concurrency: int
    requests: int
    """Requests that got an answer (right, wrong or failed)."""
    ok: int
    """Successful responses that passed the response check."""
    failed: int
    """Requests answered with an error (or not answered in time)."""
    mismatched: int
    """Successful responses that failed the check (another request's answer, wrong values)."""
    duration_s: float
    rows: int
    """Batch rows (e.g. sentences) of the correct responses."""
    latency_ms: LatencySummary
    warmup_requests: int = 0
    warmup_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)
    """Per-model server statistics for this phase (see ``ModelStats.to_json``)."""

    @property
    def errors(self) -> int:
        """Failed plus mismatched responses."""
        return self.failed + self.mismatched

    @property
    def throughput(self) -> float:
        """Correct responses per second."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        """Correct batch rows (e.g. sentences) per second."""
        return self.rows / self.duration_s if self.duration_s > 0 else 0.0

    def add_error_sample(self, message: str) -> None:
        if len(self.error_samples) < _MAX_ERROR_SAMPLES:
            self.error_samples.append(message)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            errors=self.errors,
            throughput_rps=self.throughput,
            throughput_rows_per_s=self.rows_per_second,
        )
        return data


def machine_description() -> dict[str, Any]:
    """CPU count, processor, memory and Python of this machine, for the record."""
    description: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                description["processor"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                description["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return description


@dataclass
class BenchReport:
    """A whole ``pbkit bench`` run: options, machine, and one result per concurrency level."""

    model: str
    protocol: str
    url: str
    check: str
    options: dict[str, Any]
    levels: list[LevelResult] = field(default_factory=list)
    reference_requests: int = 0
    machine: dict[str, Any] = field(default_factory=machine_description)

    @property
    def errors(self) -> int:
        """Errors over all levels."""
        return sum(level.errors for level in self.levels)

    def to_json(self) -> dict[str, Any]:
        import pbkit

        return {
            "pbkit_version": pbkit.__version__,
            "model": self.model,
            "protocol": self.protocol,
            "url": self.url,
            "check": self.check,
            "reference_requests": self.reference_requests,
            "options": self.options,
            "machine": self.machine,
            "levels": [level.to_json() for level in self.levels],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` (folders created)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def table(self) -> str:
        """A plain-text table, one line per concurrency level."""
        header = (
            f"{'conc':>5} {'requests':>9} {'req/s':>10} {'rows/s':>10} {'p50 ms':>8} {'p90 ms':>8} "
            f"{'p99 ms':>8} {'errors':>7}"
        )
        lines = [f"model {self.model!r} over {self.protocol} at {self.url}, check: {self.check}", header]
        for level in self.levels:
            lat = level.latency_ms
            lines.append(
                f"{level.concurrency:>5} {level.requests:>9} {level.throughput:>10.1f} {level.rows_per_second:>10.1f} "
                f"{lat.p50:>8.2f} {lat.p90:>8.2f} {lat.p99:>8.2f} {level.errors:>7}"
            )
        for level in self.levels:
            for sample in level.error_samples:
                lines.append(f"  error at concurrency {level.concurrency}: {sample}")
        return "\n".join(lines)
