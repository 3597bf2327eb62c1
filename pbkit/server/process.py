"""Run one tritonserver process on a model repository, and stop it leaving nothing behind.

:class:`TritonProcess` starts tritonserver in its own process session with the flags that make a
local server usable for development (``--exit-on-error=false --strict-readiness=false
--model-load-thread-count=1``), captures its log, waits for readiness, reports per-model state from
the repository index, and stops the whole process tree.

Process layout (tritonserver 2.51, Python backend)
-------------------------------------------------
Every model instance runs in its own ``triton_python_backend_stub`` process, a child of tritonserver.
The stubs stay in tritonserver's process group (they do not call ``setsid``), so signalling the group
reaches them. Each stub's command line is ``stub <model.py> <shm region> <shm size> <shm growth>
<parent pid> <backend dir> <ipc handle> <instance name> <runtime>``; the shm region starts with the
server's ``shm-region-prefix-name``, which this module makes unique per server, so the stubs of one
server can be told apart from those of any other.

Stopping
--------
tritonserver unloads all models on SIGINT, then exits; it waits up to ``--exit-timeout-secs``
(default 30 s) for models that will not unload. :meth:`TritonProcess.stop` sends SIGINT to
tritonserver only (signalling the stubs directly would break the orderly unload), waits ``grace``
seconds, then sends SIGKILL to the whole process group, kills any stub that still carries this
server's shm prefix, waits until none is left, and removes this server's ``/dev/shm`` regions.

What happens when a stub dies (observed with tritonserver 2.51 / nvidia-pytriton 0.7.0)
-------------------------------------------------------------------------------------
After ``kill -9`` of one instance's stub while the server is serving:

* every following request to that instance fails, after about 1 s (the backend's health-lock
  timeout), with ``INTERNAL`` and the message ``Stub process '<instance name>' is not healthy.``
  (HTTP status 500); decoupled models fail the same way over gRPC streaming;
* the stub is **not** restarted (python_backend r24.10 has no restart path; the error repeats for
  every request until the model is reloaded or the server restarted);
* the model stays ``READY`` in the repository index and ``/v2/models/<m>/ready`` keeps answering 200;
* nothing is written to the server log, not even at ``--log-verbose=1``;
* in explicit mode, ``load_model`` alone does not reliably recover it: while the model is still
  READY, a load with an unchanged repository may leave the dead instance in place. Unload first,
  then load: the unload often never completes (the model stays ``UNLOADING``; give it a short
  timeout), but the load that follows starts a fresh stub and the model serves again; the stuck old
  instance stays until shutdown;
* on shutdown the model cannot unload, so tritonserver waits its whole exit timeout
  (``Timeout N: Found 1 live models ...`` then ``Exit timeout expired. Exiting immediately.``), which is
  why :meth:`TritonProcess.stop` kills after a grace period.

Since neither the index nor readiness reveals it, :meth:`TritonProcess.health` compares the stub
processes seen alive for each ready model with those alive now, and also collects stub-failure log lines.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .locate import TritonInstallation, locate_tritonserver

__all__ = [
    "HealthReport",
    "ModelState",
    "StubProcess",
    "TritonProcess",
    "TritonStartError",
    "find_stub_processes",
]

STUB_EXECUTABLE = "triton_python_backend_stub"
#: Log lines that report a failing Python-backend stub.
STUB_FAILURE_PATTERN = re.compile(
    r"stub.*(not healthy|unhealthy|exited|died|crash|terminated|killed|failed to)", re.IGNORECASE
)
_SHM_DIR = Path("/dev/shm")
_PR_SET_PDEATHSIG = 1


class TritonStartError(RuntimeError):
    """tritonserver did not become ready; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(
            f"{message}\n--- last tritonserver log lines ---\n{log_tail}" if log_tail else message
        )
        self.log_tail = log_tail


@dataclass(frozen=True)
class ModelState:
    """One entry of the repository index."""

    name: str
    version: str
    state: str
    """``READY``, ``UNAVAILABLE``, ``LOADING``, ``UNLOADING``, or ``""`` for a model never loaded."""
    reason: str = ""
    """Why the model is not ready: for a failed ``initialize``, the exception text and traceback."""

    @property
    def ready(self) -> bool:
        """Whether this version serves requests."""
        return self.state == "READY"

    @property
    def failed(self) -> bool:
        """Not serving for a reason other than never having been loaded or an explicit unload."""
        return not self.ready and bool(self.state) and self.reason != "unloaded"


@dataclass(frozen=True)
class StubProcess:
    """A running ``triton_python_backend_stub``: one per model instance."""

    pid: int
    model: str
    instance: str
    model_file: str
    shm_region: str


@dataclass(frozen=True)
class HealthReport:
    """What is wrong with a running server's models, as far as can be seen from outside."""

    unavailable: tuple[ModelState, ...] = ()
    """Models of the index that failed (see :attr:`ModelState.failed`)."""
    dead_stubs: tuple[StubProcess, ...] = ()
    """Stubs seen alive earlier, for models still READY, that are gone now: their requests fail."""
    stub_log_lines: tuple[str, ...] = ()
    """Server log lines reporting stub failures."""

    @property
    def healthy(self) -> bool:
        """True when every model serves and every stub seen is alive."""
        return not (self.unavailable or self.dead_stubs)

    @property
    def unhealthy_models(self) -> list[str]:
        """Names of models that cannot serve (not READY, or with a dead stub)."""
        names = [state.name for state in self.unavailable]
        names += [stub.model for stub in self.dead_stubs if stub.model not in names]
        return names

    def describe(self) -> str:
        """A human-readable summary, one problem per line."""
        lines = [
            f"model {s.name!r} version {s.version or '-'} is {s.state or 'not loaded'}: {s.reason}".rstrip(
                ": "
            )
            for s in self.unavailable
        ]
        lines += [
            f"model {s.model!r}: stub process {s.pid} of instance {s.instance!r} has exited; its requests "
            f"fail with INTERNAL 'Stub process ... is not healthy.' until the model is unloaded and loaded "
            f"again, or the server restarted"
            for s in self.dead_stubs
        ]
        lines += [f"log: {line}" for line in self.stub_log_lines]
        return "\n".join(lines) if lines else "all models healthy"


def _read_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command may contain spaces or parentheses: fields resume after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is already dead; it only waits to be reaped
        return None
    return int(fields[2])


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def find_stub_processes(shm_prefix: str | None = None) -> list[StubProcess]:
    """Live Python-backend stub processes, optionally only those whose shm region starts with ``shm_prefix``."""
    stubs = []
    for pid in _all_pids():
        argv = _read_cmdline(pid)
        if not argv or os.path.basename(argv[0]) != STUB_EXECUTABLE or len(argv) < 3:
            continue
        if shm_prefix is not None and not argv[2].startswith(shm_prefix):
            continue
        if _process_group(pid) is None:
            continue
        model_file = argv[1]
        parts = Path(model_file).parts
        model = parts[-3] if len(parts) >= 3 else model_file
        instance = argv[8] if len(argv) > 8 else ""
        stubs.append(
            StubProcess(pid=pid, model=model, instance=instance, model_file=model_file, shm_region=argv[2])
        )
    return stubs


def _pids_in_group(pgid: int) -> list[int]:
    return [pid for pid in _all_pids() if _process_group(pid) == pgid]


def _set_parent_death_signal() -> None:
    """In the child before exec: get SIGKILL if the launching thread dies, so no server outlives its owner."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_RUNNING: weakref.WeakSet[TritonProcess] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for process in list(_RUNNING):
        with contextlib.suppress(Exception):
            process.stop(grace=3.0)


class TritonProcess:
    """One tritonserver on ``repository``; see the module docstring for the process and stop semantics.

    * The three endpoints bind ``host`` (default 127.0.0.1) on the given ports.
    * ``explicit=True`` selects ``--model-control-mode=explicit`` and loads every model
      (``--load-model=*``); ``load_models`` loads only those (and implies explicit mode).
    * ``log_verbose`` is ``--log-verbose``; ``extra_args`` are appended to the command line.
    * ``log_file`` receives the complete log; ``on_log_line`` is called with each line (without
      newline) from a reader thread; :meth:`log_text` always has it all.
    * ``stop_grace``: seconds :meth:`stop` waits after SIGINT before SIGKILL.
    * ``die_with_parent``: tritonserver gets SIGKILL when the *thread* that started it ends (Linux
      ``PR_SET_PDEATHSIG``), so a crashed test run leaves no server; turn it off when starting from a
      short-lived thread.

    Use as a context manager (start, wait until ready, stop) or call :meth:`start`,
    :meth:`wait_ready` and :meth:`stop`.
    """

    def __init__(
        self,
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
        log_file: str | os.PathLike[str] | None = None,
        on_log_line: Callable[[str], None] | None = None,
        installation: TritonInstallation | None = None,
        stop_grace: float = 10.0,
        die_with_parent: bool = True,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.host = host
        self.explicit = explicit or load_models is not None
        self.load_models = list(load_models) if load_models is not None else None
        self.log_verbose = log_verbose
        self.extra_args = list(extra_args)
        self.log_file = Path(log_file) if log_file is not None else None
        self.on_log_line = on_log_line
        self.stop_grace = stop_grace
        self.die_with_parent = die_with_parent
        self.shm_prefix = f"pbkit{os.getpid()}x{secrets.token_hex(4)}_"
        self._installation = installation
        self._popen: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._log_lines: list[str] = []
        self._log_lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._known_stubs: dict[tuple[str, str], StubProcess] = {}

    # ----------------------------------------------------------------- lifecycle
    @property
    def installation(self) -> TritonInstallation:
        """The tritonserver used (located on first use)."""
        if self._installation is None:
            self._installation = locate_tritonserver()
        return self._installation

    def command(self) -> list[str]:
        """The tritonserver command line this process runs."""
        install = self.installation
        args = [
            str(install.executable),
            f"--model-repository={self.repository}",
            f"--backend-directory={install.backend_directory}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--exit-on-error=false",
            "--strict-readiness=false",
            "--model-load-thread-count=1",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--log-verbose={self.log_verbose}",
        ]
        if install.cache_directory is not None:
            args.append(f"--cache-directory={install.cache_directory}")
        if self.explicit:
            args.append("--model-control-mode=explicit")
            models = ["*"] if self.load_models is None else self.load_models
            args += [f"--load-model={name}" for name in models]
        return args + self.extra_args

    @property
    def pid(self) -> int | None:
        """tritonserver's pid (also its process-group id), once started."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """tritonserver's exit status, or None while it runs (or before start)."""
        return self._popen.poll() if self._popen is not None else None

    def is_running(self) -> bool:
        """Whether tritonserver has been started and has not exited."""
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> TritonProcess:
        """Launch tritonserver (returns at once; see :meth:`wait_ready`)."""
        if self._popen is not None:
            raise RuntimeError("this TritonProcess was already started")
        if not self.repository.is_dir():
            raise FileNotFoundError(f"model repository {self.repository} does not exist")
        command = self.command()
        self._popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.installation.environment(),
            start_new_session=True,
            preexec_fn=_set_parent_death_signal if self.die_with_parent else None,
        )
        _RUNNING.add(self)
        log_stream: IO[str] | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log_stream = self.log_file.open("w", encoding="utf-8")
        self._reader = threading.Thread(
            target=self._read_log,
            args=(self._popen, log_stream),
            name=f"tritonserver-log-{self._popen.pid}",
            daemon=True,
        )
        self._reader.start()
        return self

    def _read_log(self, popen: subprocess.Popen[bytes], log_stream: IO[str] | None) -> None:
        assert popen.stdout is not None
        try:
            for raw in iter(popen.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._log_lock:
                    self._log_lines.append(line)
                if log_stream is not None:
                    log_stream.write(line + "\n")
                    log_stream.flush()
                if self.on_log_line is not None:
                    with contextlib.suppress(Exception):
                        self.on_log_line(line)
        finally:
            popen.stdout.close()
            if log_stream is not None:
                log_stream.close()

    def wait_ready(
        self, timeout: float = 180.0, *, cancel: threading.Event | None = None
    ) -> list[ModelState]:
        """Wait until ``/v2/health/ready`` answers 200 and return the model states.

        Raises :class:`TritonStartError` (with the log tail) if tritonserver exits first, if ``timeout``
        seconds pass, or if ``cancel`` is set. The server is left running on timeout or cancel; stop it.
        """
        if self._popen is None:
            raise RuntimeError("start() the process first")
        deadline = time.monotonic() + timeout
        while True:
            code = self._popen.poll()
            if code is not None:
                self._join_reader(5.0)
                raise TritonStartError(
                    f"tritonserver exited with status {code} before becoming ready", self.log_tail()
                )
            if self._get_status("/v2/health/ready") == 200:
                break
            if cancel is not None and cancel.is_set():
                raise TritonStartError("startup cancelled", self.log_tail())
            if time.monotonic() > deadline:
                raise TritonStartError(f"tritonserver was not ready after {timeout:.0f} s", self.log_tail())
            time.sleep(0.2)
        states = self.model_states()
        self.remember_stubs()
        return states

    def stop(self, grace: float | None = None) -> int | None:
        """Stop tritonserver and every stub; returns tritonserver's exit status (None if never started).

        SIGINT to tritonserver, ``grace`` seconds (default ``stop_grace``) to exit, then SIGKILL to its
        process group and to any stub left with this server's shm prefix. Raises RuntimeError if a
        process of this server is still alive after that.
        """
        with self._stop_lock:
            popen = self._popen
            if popen is None:
                return None
            grace = self.stop_grace if grace is None else grace
            pgid = popen.pid
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(popen.pid, signal.SIGINT)
                try:
                    popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            self._kill_everything(pgid)
            popen.wait()
            leftovers = self._wait_until_gone(pgid, timeout=10.0)
            self._join_reader(5.0)
            self._remove_shm_regions()
            _RUNNING.discard(self)
            if leftovers:
                raise RuntimeError(f"processes of tritonserver {pgid} survived SIGKILL: {leftovers}")
            return popen.returncode

    def kill(self) -> None:
        """SIGKILL tritonserver's whole process group now (safe from a signal handler); then call :meth:`stop`."""
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)

    def _kill_everything(self, pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        for stub in find_stub_processes(self.shm_prefix):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(stub.pid, signal.SIGKILL)

    def leftover_processes(self) -> list[int]:
        """Live processes of this server: its process group plus stubs carrying its shm prefix."""
        if self._popen is None:
            return []
        pids = set(_pids_in_group(self._popen.pid))
        pids.update(stub.pid for stub in find_stub_processes(self.shm_prefix))
        return sorted(pids)

    def _wait_until_gone(self, pgid: int, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            leftovers = self.leftover_processes()
            if not leftovers or time.monotonic() > deadline:
                return leftovers
            self._kill_everything(pgid)
            time.sleep(0.1)

    def _remove_shm_regions(self) -> None:
        if not _SHM_DIR.is_dir():
            return
        for region in _SHM_DIR.glob(f"{self.shm_prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()

    def _join_reader(self, timeout: float) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def __enter__(self) -> TritonProcess:
        if self._popen is None:
            self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop(grace=2.0)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- logs
    def log_text(self) -> str:
        """Everything tritonserver has printed so far."""
        with self._log_lock:
            return "\n".join(self._log_lines)

    def log_lines(self) -> list[str]:
        """The log so far, one entry per line."""
        with self._log_lock:
            return list(self._log_lines)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` log lines."""
        with self._log_lock:
            return "\n".join(self._log_lines[-lines:])

    # ----------------------------------------------------------------- HTTP control plane
    @property
    def http_base(self) -> str:
        """``http://host:port`` of the HTTP endpoint."""
        return f"http://{self.host}:{self.http_port}"

    def _get_status(self, path: str, timeout: float = 2.0) -> int | None:
        try:
            with urllib.request.urlopen(self.http_base + path, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (OSError, ValueError):
            return None

    def model_states(self, timeout: float = 30.0) -> list[ModelState]:
        """The repository index (``POST /v2/repository/index``): every model version with its state and reason."""
        request = urllib.request.Request(
            self.http_base + "/v2/repository/index",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            entries = json.loads(response.read() or b"[]")
        return [
            ModelState(
                name=str(entry.get("name", "")),
                version=str(entry.get("version", "")),
                state=str(entry.get("state", "")),
                reason=str(entry.get("reason", "")),
            )
            for entry in entries
        ]

    # ----------------------------------------------------------------- stub health
    def stub_processes(self) -> list[StubProcess]:
        """This server's live stub processes."""
        return find_stub_processes(self.shm_prefix)

    def remember_stubs(self, stubs: Iterable[StubProcess] | None = None) -> None:
        """Record the live stubs as the ones :meth:`health` expects (done at readiness; call after loading models)."""
        for stub in self.stub_processes() if stubs is None else stubs:
            self._known_stubs[(stub.model, stub.instance)] = stub

    def health(self) -> HealthReport:
        """Models that cannot serve: not READY in the index, or READY but with a stub process that died.

        Also returns the log lines that report stub failures. See the module docstring for why a dead
        stub must be detected this way.
        """
        states = self.model_states()
        alive = self.stub_processes()
        alive_pids = {stub.pid for stub in alive}
        ready_models = {state.name for state in states if state.ready}
        dead = [
            stub
            for key, stub in sorted(self._known_stubs.items())
            if stub.pid not in alive_pids
            and stub.model in ready_models
            and not any((s.model, s.instance) == key for s in alive)
        ]
        # Remember new stubs (models loaded since, or restarted instances).
        self.remember_stubs(alive)
        for stub in list(self._known_stubs.values()):
            if stub.model not in ready_models:
                del self._known_stubs[(stub.model, stub.instance)]
        return HealthReport(
            unavailable=tuple(state for state in states if state.failed),
            dead_stubs=tuple(dead),
            stub_log_lines=tuple(line for line in self.log_lines() if STUB_FAILURE_PATTERN.search(line)),
        )
