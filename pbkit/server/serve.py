"""The engine of ``pbkit serve REPO``: run tritonserver in the foreground until Ctrl-C.

:func:`serve_repository` starts the server, streams its log, prints the endpoints and a table of
models (READY / UNAVAILABLE with the reason), and on SIGINT or SIGTERM stops tritonserver and every
stub process. A second signal while stopping kills everything at once.

Exit codes: 0 after a requested stop, 1 when tritonserver failed to start or exited by itself,
2 when no tritonserver or no repository was found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from .locate import TritonInstallation, TritonNotFoundError, locate_tritonserver
from .process import ModelState, StubProcess, TritonProcess, TritonStartError

__all__ = [
    "EXIT_FAILED",
    "EXIT_NOT_FOUND",
    "EXIT_STOPPED",
    "HealthWatcher",
    "describe_dead_stub",
    "format_model_table",
    "serve_repository",
]

EXIT_STOPPED = 0
EXIT_FAILED = 1
EXIT_NOT_FOUND = 2
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def format_model_table(states: Sequence[ModelState]) -> str:
    """A fixed-width table of models: name, version, state and the first line of the reason."""
    rows = [("MODEL", "VERSION", "STATE", "REASON")]
    rows += [
        (
            s.name,
            s.version or "-",
            s.state or "NOT LOADED",
            s.reason.strip().splitlines()[0] if s.reason.strip() else "",
        )
        for s in sorted(states, key=lambda s: (s.name, s.version))
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _describe_failures(states: Sequence[ModelState]) -> str:
    blocks = []
    for state in states:
        if not state.ready and state.reason.strip():
            body = "\n".join(("    " + line).rstrip() for line in state.reason.strip().splitlines())
            blocks.append(f"  {state.name} (version {state.version or '-'}):\n{body}")
    return "Models that failed to load:\n" + "\n".join(blocks) if blocks else ""


@contextlib.contextmanager
def _stop_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``handler`` while inside (only possible from the main thread)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def serve_repository(
    repository: str | os.PathLike[str],
    *,
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    host: str = "127.0.0.1",
    explicit: bool = False,
    load_models: Sequence[str] | None = None,
    log_verbose: int = 0,
    extra_args: Sequence[str] = (),
    stream_logs: bool = True,
    log_file: str | os.PathLike[str] | None = None,
    startup_timeout: float = 600.0,
    stop_grace: float = 10.0,
    installation: TritonInstallation | None = None,
    out: TextIO | None = None,
    stop_event: threading.Event | None = None,
    health_interval: float = 2.0,
) -> int:
    """Serve ``repository`` on tritonserver until SIGINT/SIGTERM (or ``stop_event``); returns an exit code.

    ``host`` is the address the three endpoints bind (``0.0.0.0`` to accept other machines).
    ``stream_logs`` echoes the server log to ``out`` (default ``sys.stdout``); ``log_file`` keeps a copy.
    Signal handlers are installed only when called from the main thread; elsewhere use ``stop_event``.
    Every ``health_interval`` seconds (0: never) the models are checked, and a model instance whose
    Python stub process has died, or a model that failed to load after startup, is reported once.
    """
    stream = sys.stdout if out is None else out
    write_lock = threading.Lock()

    def emit(text: str) -> None:
        with write_lock:
            stream.write(text + "\n")
            stream.flush()

    stop_requested = stop_event if stop_event is not None else threading.Event()
    repository = Path(repository).resolve()
    if not repository.is_dir():
        emit(f"error: model repository {repository} does not exist")
        return EXIT_NOT_FOUND
    try:
        install = installation or locate_tritonserver()
    except TritonNotFoundError as error:
        emit(f"error: {error}")
        return EXIT_NOT_FOUND

    process = TritonProcess(
        repository,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        host=host,
        explicit=explicit,
        load_models=load_models,
        log_verbose=log_verbose,
        extra_args=extra_args,
        log_file=log_file,
        on_log_line=emit if stream_logs else None,
        installation=install,
        stop_grace=stop_grace,
    )
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        stop_requested.set()
        if signals_seen > 1:
            process.kill()

    with _stop_signals(on_signal):
        try:
            process.start()
            emit(f"pbkit: starting tritonserver (pid {process.pid}) on {repository}")
            try:
                states = process.wait_ready(startup_timeout, cancel=stop_requested)
            except TritonStartError as error:
                if stop_requested.is_set():
                    emit("pbkit: interrupted during startup, stopping")
                    return EXIT_STOPPED
                emit(f"pbkit: error: {error}")
                return EXIT_FAILED
            emit(_banner(process, install, states))
            watcher = HealthWatcher(process, states)
            next_check = time.monotonic() + health_interval
            while not stop_requested.wait(0.5):
                code = process.returncode
                if code is not None:
                    emit(f"pbkit: tritonserver exited by itself with status {code}")
                    return EXIT_FAILED
                if health_interval > 0 and time.monotonic() >= next_check:
                    for message in watcher.news():
                        emit(message)
                    next_check = time.monotonic() + health_interval
            emit("pbkit: stopping tritonserver")
            return EXIT_STOPPED
        finally:
            try:
                process.stop()
            except RuntimeError as error:
                emit(f"pbkit: error: {error}")
            emit("pbkit: stopped")


class HealthWatcher:
    """Turns :meth:`TritonProcess.health` into messages, each problem reported once.

    ``process`` needs only a ``health()`` method; failures among ``startup_states`` (already shown
    in the banner) are not reported again.
    """

    def __init__(self, process: TritonProcess, startup_states: Sequence[ModelState]) -> None:
        self.process = process
        # Failures shown in the banner are not repeated.
        self._reported_failures = {(s.name, s.version, s.reason) for s in startup_states if s.failed}
        self._reported_stubs: set[int] = set()

    def news(self) -> list[str]:
        """Messages about problems that appeared since the last call (none if the server cannot be asked)."""
        try:
            health = self.process.health()
        except (OSError, ValueError):
            return []
        messages = []
        for stub in health.dead_stubs:
            if stub.pid not in self._reported_stubs:
                self._reported_stubs.add(stub.pid)
                messages.append(describe_dead_stub(stub))
        for state in health.unavailable:
            if state.state != "UNAVAILABLE":  # LOADING / UNLOADING are transient
                continue
            key = (state.name, state.version, state.reason)
            if key not in self._reported_failures:
                self._reported_failures.add(key)
                reason = state.reason.strip() or "no reason given"
                body = "\n".join(("    " + line).rstrip() for line in reason.splitlines())
                messages.append(
                    f"pbkit: model {state.name!r} version {state.version or '-'} is {state.state}:\n{body}"
                )
        return messages


def describe_dead_stub(stub: StubProcess) -> str:
    """What a dead stub means for its model, and what to do about it."""
    return (
        f"pbkit: model {stub.model!r} cannot serve: the Python stub process {stub.pid} of instance "
        f"{stub.instance!r} has exited (killed or crashed). Triton does not restart it and still lists the "
        f'model as READY; each request to this instance fails with INTERNAL "Stub process '
        f"'{stub.instance}' is not healthy.\" Restart the server (or, in explicit mode, unload the model and load it again)."
    )


def _banner(process: TritonProcess, install: TritonInstallation, states: Sequence[ModelState]) -> str:
    origin = f"nvidia-pytriton {install.version}" if install.source == "pytriton" else str(install.executable)
    ready = sum(state.ready for state in states)
    loaded = sum(bool(state.state) for state in states)
    not_loaded = len(states) - loaded
    lines = [
        "",
        f"pbkit: tritonserver is ready (pid {process.pid}, {origin})",
        f"  HTTP     http://{process.host}:{process.http_port}",
        f"  gRPC     {process.host}:{process.grpc_port}",
        f"  metrics  http://{process.host}:{process.metrics_port}/metrics",
        "",
        format_model_table(states) if states else "(the repository has no models)",
        "",
        f"{ready} of {loaded} model(s) ready" + (f", {not_loaded} not loaded." if not_loaded else "."),
    ]
    failures = _describe_failures(states)
    if failures:
        lines += [failures]
    lines += ["Press Ctrl-C to stop.", ""]
    return "\n".join(lines)
