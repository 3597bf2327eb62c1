"""Shared pieces of the benchmark suite: environment, process accounting, inputs, measuring, PyTriton."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbkit.bench import BenchOptions, InputFactory, LevelResult, ResponseCheck, run_bench
from pbkit.bench.workload import ModelInfo, TensorInfo, synthetic_inputs
from pbkit.server.process import find_stub_processes
from pbkit.testing.server import find_free_ports

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def prepare_environment(omp_passive: bool = True) -> list[str]:
    """Set what every server of the suite inherits; return notes on what was set, for the report.

    With ``omp_passive``, ``OMP_WAIT_POLICY=PASSIVE`` is set for this process (before torch loads)
    and every process it starts: OpenMP threads that wait for work sleep instead of spinning. On
    2 cores shared by the load generator, tritonserver, several model processes (and, on a shared
    machine, other people's jobs), a spinning torch thread pool loses most of its time to waiting
    for its preempted partner thread; every side of every comparison gets the same setting.

    The Python-backend stub links ``libpython3.X.so`` from the dynamic loader's path, while the
    stdlib it imports is the running interpreter's. pbkit's launcher puts the interpreter's own
    ``libpython`` on the stub's library path; PyTriton's does not, and when the system's
    ``libpython`` has another patch version its tensor store dies in
    ``multiprocessing.resource_tracker``. So the suite puts that folder first on
    ``LD_LIBRARY_PATH`` for every server it starts, pbkit's and PyTriton's alike.
    """
    notes = []
    if omp_passive and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if "OMP_WAIT_POLICY" in os.environ:
        notes.append(
            f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} for the suite and every process it starts"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME")
    if (
        sysconfig.get_config_var("Py_ENABLE_SHARED")
        and libdir
        and soname
        and (Path(libdir) / soname).is_file()
    ):
        current = os.environ.get("LD_LIBRARY_PATH", "")
        if libdir not in current.split(os.pathsep):
            os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, current) if p)
        notes.append(f"LD_LIBRARY_PATH starts with {libdir} (the running interpreter's {soname})")
    return notes


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_mib(pid: int) -> float | None:
    """Resident memory (VmRSS) of a process in MiB, or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sentence_inputs(seed: int = 0) -> InputFactory:
    """One English-like sentence (6-24 words) per request, as TEXT ``[1, 1]`` BYTES."""
    model = ModelInfo("sentences", 64, (TensorInfo("TEXT", "BYTES", (1,)),), ())
    return synthetic_inputs(model, batch_size=1, seed=seed)


@dataclass
class Measurement:
    """One measured level plus the CPU the watched processes spent during it."""

    label: str
    level: LevelResult
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    load_1min: float = 0.0
    """The machine's 1-minute load average when the window ended."""

    @property
    def throughput(self) -> float:
        return self.level.rows_per_second

    def cpu_us_per_request(self, name: str) -> float:
        return self.cpu_seconds.get(name, 0.0) / max(self.level.ok, 1) * 1e6

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "throughput": self.throughput,
            "cpu_seconds": self.cpu_seconds,
            "cpu_us_per_request": {name: self.cpu_us_per_request(name) for name in self.cpu_seconds},
            "load_1min": self.load_1min,
            "level": self.level.to_json(),
        }


def measure(
    label: str,
    *,
    url: str,
    model: str,
    concurrency: int,
    duration: float,
    warmup: float,
    inputs: InputFactory,
    check: ResponseCheck,
    pool_size: int,
    watch: Mapping[str, int] | None = None,
    protocol: str = "grpc",
) -> Measurement:
    """Warm up, then measure one level; CPU of the ``watch`` processes is sampled around the measurement."""
    common = {
        "model": model,
        "protocol": protocol,
        "url": url,
        "concurrency": [concurrency],
        "pool_size": pool_size,
        "progress": sys.stderr.isatty(),
        "warmup_requests": None,
        "warmup_seconds": None,
    }
    if warmup > 0:
        run_bench(BenchOptions(duration=warmup, **common), inputs=inputs, check=check)
    pids = dict(watch or {})
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    report = run_bench(BenchOptions(duration=duration, **common), inputs=inputs, check=check)
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    level = report.levels[0]
    print(
        f"  {label:<34} c={concurrency:<3} {level.rows_per_second:9.1f} rows/s  "
        f"p50 {level.latency_ms.p50:7.2f} ms  p99 {level.latency_ms.p99:7.2f} ms  errors {level.errors}",
        flush=True,
    )
    return Measurement(label, level, spent, load_average()[0])


def _get(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except Exception:
        return None


@dataclass
class PyTritonServer:
    """``bench/pytriton_minilm.py`` running in its own process session."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    log_path: Path

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stub_pids(self) -> list[int]:
        """Stub processes of this PyTriton's tritonserver (its shm prefix names the PyTriton pid)."""
        return [stub.pid for stub in find_stub_processes(f"pytrtion{self.process.pid}")]

    def tritonserver_pid(self) -> int | None:
        """The tritonserver that PyTriton started (a child in this session)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if (
                    argv
                    and argv[0].endswith(b"/tritonserver")
                    and os.getpgid(int(entry.name)) == self.process.pid
                ):
                    return int(entry.name)
        return None


@contextlib.contextmanager
def pytriton_server(log_path: Path, startup_timeout: float = 240.0) -> Iterator[PyTritonServer]:
    """Start the PyTriton MiniLM server, wait for its model, and stop it (and all it started) afterwards."""
    grpc_port, http_port, metrics_port = find_free_ports(3)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(BENCH_DIR / "pytriton_minilm.py"),
                f"--grpc-port={grpc_port}",
                f"--http-port={http_port}",
                f"--metrics-port={metrics_port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PyTritonServer(process, grpc_port, http_port, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        ready_url = f"http://127.0.0.1:{http_port}/v2/models/minilm_pytriton/ready"
        while _get(ready_url) != 200:
            if process.poll() is not None:
                raise RuntimeError(f"PyTriton exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"PyTriton was not ready after {startup_timeout:.0f} s; see {log_path}")
            time.sleep(0.5)
        yield server
    finally:
        _stop_session(process, f"pytrtion{process.pid}")


def _stop_session(process: subprocess.Popen[bytes], shm_prefix: str, grace: float = 60.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for stub in find_stub_processes(shm_prefix):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(stub.pid, signal.SIGKILL)
    process.wait()
