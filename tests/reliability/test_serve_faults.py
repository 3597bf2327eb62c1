"""``pbkit serve`` under faults: a model whose ``setup`` raises is reported with the exception text
while the others serve, and a killed stub process is reported while serving."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_contracts import RELIABILITY_PROJECT

from pbkit.server.process import HealthReport, ModelState, StubProcess, find_stub_processes
from pbkit.server.serve import HealthWatcher, describe_dead_stub
from pbkit.testing.server import find_free_ports

SETUP_FAILURE = "setup failed on purpose: weights file 'missing-weights.bin' not found"


# --------------------------------------------------------------------------- the watcher, without a server
class ScriptedProcess:
    """Stands in for a TritonProcess: ``health()`` returns the next scripted report (or raises)."""

    def __init__(self, reports: list[HealthReport | Exception]) -> None:
        self.reports = reports

    def health(self) -> HealthReport:
        report = self.reports.pop(0)
        if isinstance(report, Exception):
            raise report
        return report


def test_health_watcher_reports_each_new_problem_once() -> None:
    broken = ModelState("broken", "1", "UNAVAILABLE", "Internal: RuntimeError: at startup")
    stub = StubProcess(pid=4242, model="sleeper", instance="sleeper_0", model_file="m.py", shm_region="x")
    later = ModelState("late", "1", "UNAVAILABLE", "Internal: ValueError: bad weights\nAt: line 3")
    loading = ModelState("coming", "1", "LOADING", "")
    process = ScriptedProcess(
        [
            HealthReport(unavailable=(broken,)),
            HealthReport(unavailable=(broken, loading), dead_stubs=(stub,)),
            ConnectionRefusedError("server gone"),
            HealthReport(unavailable=(broken, later), dead_stubs=(stub,)),
            HealthReport(unavailable=(broken, later), dead_stubs=(stub,)),
        ]
    )
    watcher = HealthWatcher(process, [broken])  # type: ignore[arg-type]
    assert watcher.news() == [], "failures shown at startup are not repeated"
    assert watcher.news() == [describe_dead_stub(stub)], "LOADING is not a failure"
    assert watcher.news() == [], "a server that cannot be asked gives no news"
    assert watcher.news() == [
        "pbkit: model 'late' version 1 is UNAVAILABLE:\n    Internal: ValueError: bad weights\n    At: line 3"
    ]
    assert watcher.news() == []
    message = describe_dead_stub(stub)
    assert "stub process 4242 of instance 'sleeper_0' has exited" in message
    assert "INTERNAL \"Stub process 'sleeper_0' is not healthy.\"" in message


# --------------------------------------------------------------------------- pbkit serve, for real
def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        lines.put(line.rstrip("\n"))


def _wait_for(lines: queue.Queue[str], output: list[str], pattern: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        output.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r} within {seconds} s:\n" + "\n".join(output))


@pytest.mark.server
def test_pbkit_serve_reports_setup_failure_and_a_killed_stub(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient

    repository = tmp_path / "repo"
    http, grpc, metrics = find_free_ports(3)
    command = [
        sys.executable,
        "-m",
        "pbkit.cli.main",
        "serve",
        str(RELIABILITY_PROJECT),
        "-o",
        str(repository),
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        "--quiet",
    ]
    serving = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(serving.stdout, lines), daemon=True).start()
    output: list[str] = []
    try:
        _wait_for(lines, output, r"^Press Ctrl-C to stop\.$", 180)
        text = "\n".join(output)
        assert re.search(
            rf"^setup_fails\s+1\s+UNAVAILABLE\s+Internal: RuntimeError: {re.escape(SETUP_FAILURE)}$",
            text,
            re.M,
        )
        failures = text[text.index("Models that failed to load:") :]
        assert f"RuntimeError: {SETUP_FAILURE}" in failures and "reliability_models.py" in failures
        assert re.search(r"^6 of 7 model\(s\) ready\.$", text, re.M), text
        assert re.search(r"^faulty\s+1\s+READY$", text, re.M)

        # The other models serve.
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        x = grpcclient.InferInput("X", [1, 1], "INT64")
        x.set_data_from_numpy(np.array([[5]], dtype=np.int64))
        assert client.infer("faulty", [x], client_timeout=30).as_numpy("Y").tolist() == [[15]]

        # Kill the stub of one instance: pbkit serve says so.
        stubs = [s for s in find_stub_processes() if s.model_file.startswith(str(repository.resolve()))]
        victim = next(s for s in stubs if s.model == "sleeper")
        os.kill(victim.pid, signal.SIGKILL)
        line = _wait_for(lines, output, r"^pbkit: model 'sleeper' cannot serve", 20)
        assert line == describe_dead_stub(victim)
        assert client.infer("faulty", [x], client_timeout=30).as_numpy("Y").tolist() == [[15]]
        client.close()

        serving.send_signal(signal.SIGINT)
        assert serving.wait(timeout=90) == 0
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()
    deadline = time.monotonic() + 10
    while not lines.empty() or time.monotonic() < deadline:
        try:
            output.append(lines.get(timeout=0.5))
        except queue.Empty:
            if output and output[-1] == "pbkit: stopped":
                break
    assert output[-1] == "pbkit: stopped", "\n".join(output[-20:])
    assert [s for s in find_stub_processes() if s.model_file.startswith(str(repository.resolve()))] == []
