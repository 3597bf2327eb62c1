"""The real local tritonserver: TritonProcess, TritonServer (over gRPC and HTTP) and serve_repository.

The fixture repository tests/fixtures/launcher/repo holds plain Python-backend models:
add_sub (batched FP32), echo_bytes (BYTES in/out), repeat (decoupled), slow (sleeps),
fail_execute (raises, or answers an error with a chosen code), env_probe (reports the stub's
Python) and broken_init (initialize raises).
"""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pbkit.server.locate as locate_module
from pbkit.server.locate import TritonNotFoundError, locate_tritonserver, prepare_pytriton_backends
from pbkit.server.process import TritonProcess, TritonStartError, find_stub_processes
from pbkit.server.serve import EXIT_FAILED, EXIT_NOT_FOUND, serve_repository
from pbkit.testing.client import InferError, TritonClient
from pbkit.testing.server import (
    DEFAULT_TIMEOUT,
    InferTimeout,
    TritonServer,
    TritonServerClient,
    code_from_stream_message,
    find_free_ports,
)

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[1] / "fixtures" / "launcher" / "repo"
PROTOCOLS = ("grpc", "http")
ALL_MODELS = {"add_sub", "broken_init", "echo_bytes", "env_probe", "fail_execute", "repeat", "slow"}


@pytest.fixture(scope="module")
def server() -> Iterator[TritonServer]:
    with TritonServer(REPO, timeout=60) as running:
        yield running


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, server: TritonServer) -> TritonServerClient:
    return server.client(request.param)


def add_sub_inputs(rows: int = 2, offset: float = 0.0) -> dict[str, np.ndarray]:
    first = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) + offset
    return {"INPUT0": first, "INPUT1": np.full((rows, 4), 0.5, dtype=np.float32)}


def repeat_inputs(value: int, count: int, delay: float | None = None) -> dict[str, np.ndarray]:
    inputs = {"VALUE": np.array([value], dtype=np.int32), "COUNT": np.array([count], dtype=np.int32)}
    if delay is not None:
        inputs["DELAY"] = np.array([delay], dtype=np.float32)
    return inputs


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


# --------------------------------------------------------------------------- locating the server
def test_locate_prepares_backend_folder_and_environment() -> None:
    install = locate_tritonserver()
    assert install.executable.is_file() and os.access(install.executable, os.X_OK)
    python_dir = install.backend_directory / "python"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py", "triton_python_backend_stub"):
        assert (python_dir / name).is_file(), name
    env = install.environment({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"})
    if install.source == "pytriton":
        assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
        assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0].endswith("nvidia_pytriton.libs")
        assert env["LD_LIBRARY_PATH"].split(os.pathsep)[-1] == "/opt/lib"
        # Located twice, the same prepared folder is reused.
        assert locate_tritonserver().backend_directory == install.backend_directory


def test_missing_tritonserver_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(locate_module.TRITONSERVER_ENV, raising=False)
    monkeypatch.setattr(locate_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(locate_module, "_pytriton_package_dir", lambda: None)
    with pytest.raises(TritonNotFoundError, match="pip install nvidia-pytriton"):
        locate_tritonserver()
    monkeypatch.setenv(locate_module.TRITONSERVER_ENV, "/nonexistent/tritonserver")
    with pytest.raises(TritonNotFoundError, match="/nonexistent/tritonserver is not an executable"):
        locate_tritonserver()
    output = io.StringIO()
    assert serve_repository(REPO, out=output) == EXIT_NOT_FOUND
    assert "pip install nvidia-pytriton" in output.getvalue()


def test_serve_missing_repository(tmp_path: Path) -> None:
    output = io.StringIO()
    assert serve_repository(tmp_path / "absent", out=output) == EXIT_NOT_FOUND
    assert "does not exist" in output.getvalue()


def _fake_pytriton(root: Path, stub_versions: list[str]) -> Path:
    package = root / "site-packages" / "pytriton"
    python_backend = package / "tritonserver" / "backends" / "python"
    python_backend.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (python_backend / name).write_text(name)
    for version in stub_versions:
        stub_dir = package / "tritonserver" / "python_backend_stubs" / version
        stub_dir.mkdir(parents=True)
        (stub_dir / "triton_python_backend_stub").write_text(version)
    return package


def test_backend_folder_is_prepared_once_and_repaired(tmp_path: Path) -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    package = _fake_pytriton(tmp_path, ["3.8", running])
    cache = tmp_path / "cache"
    folder = prepare_pytriton_backends(package, version="9.9", cache_root=cache)
    assert folder.parent == cache and f"py{running}" in folder.name and "9.9" in folder.name
    stub = folder / "python" / "triton_python_backend_stub"
    assert stub.read_text() == running
    assert prepare_pytriton_backends(package, version="9.9", cache_root=cache) == folder
    assert [entry.name for entry in cache.iterdir()] == [folder.name], "no staging folder is left behind"
    stub.unlink()
    assert prepare_pytriton_backends(package, version="9.9", cache_root=cache) == folder
    assert stub.read_text() == running


def test_backend_folder_needs_a_stub_for_this_python(tmp_path: Path) -> None:
    package = _fake_pytriton(tmp_path, ["3.8"])
    with pytest.raises(TritonNotFoundError, match=r"no Python-backend stub for Python .*it has: 3\.8"):
        prepare_pytriton_backends(package, cache_root=tmp_path / "cache")


def test_startup_failure_is_reported_with_log_tail() -> None:
    http, grpc, metrics = find_free_ports(3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", http))
        busy.listen()
        process = TritonProcess(
            REPO, http_port=http, grpc_port=grpc, metrics_port=metrics, load_models=["add_sub"]
        )
        started = time.monotonic()
        process.start()
        try:
            with pytest.raises(TritonStartError) as raised:
                process.wait_ready(timeout=120)
        finally:
            process.stop(grace=2)
    assert time.monotonic() - started < 60, "a dead server must fail fast, not wait for the timeout"
    assert "exited with status 1 before becoming ready" in str(raised.value)
    assert f"Socket '127.0.0.1:{http}' already in use" in raised.value.log_tail
    assert process.leftover_processes() == []


# --------------------------------------------------------------------------- readiness and state
def test_server_is_a_triton_client(server: TritonServer) -> None:
    assert isinstance(server, TritonClient)
    assert isinstance(server.client("http"), TritonClient)
    assert server.protocol == "grpc" and server.client("http").protocol == "http"
    assert server.timeout == 60 and server.client("http", timeout=5).timeout == 5
    assert DEFAULT_TIMEOUT == TritonServer(REPO).timeout


def test_failed_model_reported_with_exception_text_while_others_serve(server: TritonServer) -> None:
    states = {state.name: state for state in server.model_states()}
    assert set(states) == ALL_MODELS
    broken = states.pop("broken_init")
    assert broken.state == "UNAVAILABLE" and not broken.ready
    assert "RuntimeError: weights file is missing: /nonexistent/weights.bin" in broken.reason
    assert all(state.ready for state in states.values()), states
    health = server.health()
    assert not health.healthy and health.unhealthy_models == ["broken_init"]
    assert "weights file is missing" in health.describe()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_is_model_ready(server: TritonServer, protocol: str) -> None:
    view = server.client(protocol)
    assert view.is_model_ready("add_sub")
    assert view.is_model_ready("add_sub", version=1)
    assert not view.is_model_ready("add_sub", version=2)
    assert not view.is_model_ready("broken_init")
    assert not view.is_model_ready("no_such_model")


def test_stub_runs_this_interpreter(server: TritonServer) -> None:
    # The stub takes sys.prefix from the first python on PATH and must embed this interpreter's own
    # libpython: with the system's copy, `import ssl` fails with undefined symbols under pyenv/conda.
    result = server.infer("env_probe", {"X": np.zeros(1, np.float32)})
    assert result["PREFIX"][0].decode() == sys.prefix
    assert result["VERSION"][0].decode() == sys.version
    assert result["OPENSSL"][0].decode() == ssl.OPENSSL_VERSION


def test_endpoints_and_log(server: TritonServer) -> None:
    assert server.grpc_url == f"127.0.0.1:{server.grpc_port}"
    with urllib.request.urlopen(server.http_url + "/v2/health/ready", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert "nv_inference_request_success" in response.read().decode()
    assert f"Started GRPCInferenceService at 127.0.0.1:{server.grpc_port}" in server.log
    assert server.client("http").log == server.log


# --------------------------------------------------------------------------- inference
def test_infer_gives_identical_results_over_both_protocols(server: TritonServer) -> None:
    inputs = add_sub_inputs(rows=3)
    over_grpc = server.infer("add_sub", inputs)
    over_http = server.client("http").infer("add_sub", inputs)
    assert set(over_grpc) == set(over_http) == {"SUM", "DIFF"}
    for name in over_grpc:
        assert over_grpc[name].dtype == over_http[name].dtype == np.float32
        np.testing.assert_array_equal(over_grpc[name], over_http[name])
    np.testing.assert_array_equal(over_grpc["SUM"], inputs["INPUT0"] + inputs["INPUT1"])
    np.testing.assert_array_equal(over_grpc["DIFF"], inputs["INPUT0"] - inputs["INPUT1"])


def test_infer_requested_outputs_and_version(client: TritonServerClient) -> None:
    result = client.infer("add_sub", add_sub_inputs(), outputs=["DIFF"], version=1)
    assert list(result) == ["DIFF"]


def test_bytes_round_trip_exactly(client: TritonServerClient) -> None:
    values = [b"", b"\xff\xfe\x00binary\x00", "héllo".encode(), b"\x00", b"plain"]
    text = np.empty(len(values), dtype=np.object_)
    text[:] = values
    result = client.infer("echo_bytes", {"TEXT": text})
    assert result["ECHO"].dtype == np.object_
    assert list(result["ECHO"]) == values
    assert list(result["LENGTH"]) == [len(value) for value in values]


@pytest.mark.parametrize(
    "given",
    [np.array(["a", "héllo"]), np.array([b"a", "héllo".encode()], dtype=np.bytes_), ["a", "héllo"]],
    ids=["str", "np.bytes_", "list"],
)
def test_string_inputs_are_converted_to_bytes(client: TritonServerClient, given: object) -> None:
    result = client.infer("echo_bytes", {"TEXT": given})
    assert list(result["ECHO"]) == [b"a", "héllo".encode()]
    assert all(type(item) is bytes for item in result["ECHO"])


def test_request_parameters_reach_the_model(client: TritonServerClient) -> None:
    with pytest.raises(InferError) as raised:
        client.infer("fail_execute", {"X": np.ones(2, np.float32)}, parameters={"error_code": "UNAVAILABLE"})
    assert raised.value.code == "UNAVAILABLE"
    assert raised.value.message == "model chose UNAVAILABLE"


def test_concurrent_threads_share_views(server: TritonServer) -> None:
    views = [server, server.client("http")]
    errors: list[BaseException] = []

    def work(view: TritonServerClient, seed: int) -> None:
        try:
            for index in range(25):
                inputs = add_sub_inputs(rows=1 + index % 4, offset=seed * 100 + index)
                result = view.infer("add_sub", inputs)
                np.testing.assert_array_equal(result["SUM"], inputs["INPUT0"] + inputs["INPUT1"])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(views[seed % 2], seed)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


# --------------------------------------------------------------------------- errors
BAD_REQUESTS = {
    "unknown input": (
        "add_sub",
        {"INPUT0": np.ones((1, 4), np.float32), "BOGUS": np.ones((1, 4), np.float32)},
    ),
    "missing input": ("add_sub", {"INPUT0": np.ones((1, 4), np.float32)}),
    "wrong dtype": ("add_sub", {"INPUT0": np.ones((1, 4), np.int32), "INPUT1": np.ones((1, 4), np.float32)}),
    "wrong shape": (
        "add_sub",
        {"INPUT0": np.ones((1, 5), np.float32), "INPUT1": np.ones((1, 5), np.float32)},
    ),
    "batch too large": (
        "add_sub",
        {"INPUT0": np.ones((9, 4), np.float32), "INPUT1": np.ones((9, 4), np.float32)},
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_invalid_requests_are_invalid_arg_over_both_protocols(server: TritonServer, case: str) -> None:
    model, inputs = BAD_REQUESTS[case]
    seen = {}
    for protocol in PROTOCOLS:
        with pytest.raises(InferError) as raised:
            server.client(protocol).infer(model, inputs)
        seen[protocol] = (raised.value.code, raised.value.message)
    assert seen["grpc"] == seen["http"]
    assert seen["grpc"][0] == "INVALID_ARG"


@pytest.mark.parametrize(
    ("model", "inputs", "code", "text"),
    [
        ("fail_execute", {"X": np.ones(2, np.float32)}, "INTERNAL", "ValueError: execute failed on purpose"),
        ("no_such_model", {"X": np.ones(2, np.float32)}, "NOT_FOUND", "unknown model: 'no_such_model'"),
        ("broken_init", {"X": np.ones(1, np.float32)}, "NOT_FOUND", "has no available versions"),
        ("repeat", repeat_inputs(1, 1), "UNSUPPORTED", "decoupled transaction policy"),
    ],
    ids=["execute-raises", "unknown-model", "failed-model", "decoupled-via-infer"],
)
def test_server_errors_have_the_same_code_over_both_protocols(
    server: TritonServer, model: str, inputs: dict[str, np.ndarray], code: str, text: str
) -> None:
    for protocol in PROTOCOLS:
        with pytest.raises(InferError) as raised:
            server.client(protocol).infer(model, inputs)
        assert raised.value.code == code, protocol
        assert text in raised.value.message, protocol


@pytest.mark.parametrize(
    ("model_code", "grpc_code", "http_code"),
    [
        ("INVALID_ARG", "INVALID_ARG", "INVALID_ARG"),
        ("INTERNAL", "INTERNAL", "INTERNAL"),
        ("NOT_FOUND", "NOT_FOUND", "NOT_FOUND"),
        ("UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE"),
        ("UNSUPPORTED", "UNSUPPORTED", "UNSUPPORTED"),
        # HTTP answers 400 for these, like INVALID_ARG: only gRPC tells them apart.
        ("ALREADY_EXISTS", "ALREADY_EXISTS", "INVALID_ARG"),
        ("CANCELLED", "CANCELLED", "INVALID_ARG"),
        ("UNKNOWN", "UNKNOWN", "INVALID_ARG"),
    ],
)
def test_model_error_codes_map_back_from_each_protocol(
    server: TritonServer, model_code: str, grpc_code: str, http_code: str
) -> None:
    for protocol, expected in (("grpc", grpc_code), ("http", http_code)):
        with pytest.raises(InferError) as raised:
            server.client(protocol).infer(
                "fail_execute", {"X": np.ones(1, np.float32)}, parameters={"error_code": model_code}
            )
        assert (raised.value.code, raised.value.message) == (expected, f"model chose {model_code}"), protocol


def test_unconvertible_input_is_rejected_before_sending(server: TritonServer) -> None:
    with pytest.raises(InferError) as raised:
        server.infer("echo_bytes", {"TEXT": np.array([1.5, "x"], dtype=object)})
    assert raised.value.code == "INVALID_ARG"


# --------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stream_yields_one_dict_per_response(server: TritonServer, protocol: str) -> None:
    # `stream` goes over gRPC whatever the view's protocol: HTTP cannot serve decoupled models.
    responses = list(server.client(protocol).stream("repeat", repeat_inputs(7, 3)))
    assert [int(r["INDEX"][0]) for r in responses] == [0, 1, 2]
    assert all(int(r["OUT"][0]) == 7 and r["OUT"].dtype == np.int32 for r in responses)


def test_stream_with_no_responses_yields_nothing(server: TritonServer) -> None:
    # The model sends only the flag-only final response: no empty dict is yielded.
    assert list(server.stream("repeat", repeat_inputs(7, 0))) == []


def test_stream_of_non_decoupled_model_yields_its_single_response(server: TritonServer) -> None:
    inputs = add_sub_inputs()
    (response,) = list(server.stream("add_sub", inputs))
    np.testing.assert_array_equal(response["SUM"], inputs["INPUT0"] + inputs["INPUT1"])


def test_stream_error_response_raises(server: TritonServer) -> None:
    with pytest.raises(InferError) as raised:
        list(server.stream("repeat", repeat_inputs(7, -1)))
    # Triton streams errors without their code; a model's own error comes back as UNKNOWN.
    assert raised.value.code == "UNKNOWN"
    assert raised.value.message == "COUNT must be >= 0, got -1"
    assert server.is_running() and server.is_model_ready("repeat")


def test_stream_validation_error_keeps_its_code(server: TritonServer) -> None:
    inputs = {"VALUE": np.array([1.0], np.float32), "COUNT": np.array([1], np.int32)}
    with pytest.raises(InferError) as raised:
        list(server.stream("repeat", inputs))
    assert raised.value.code == "INVALID_ARG"
    assert "data-type is 'FP32'" in raised.value.message


def test_stream_message_classification() -> None:
    assert code_from_stream_message("Request for unknown model: 'x' is not found") == "NOT_FOUND"
    assert (
        code_from_stream_message("Failed to process the request(s) for model 'm_0', message: E") == "INTERNAL"
    )
    assert code_from_stream_message("Stub process 'm_0' is not healthy.") == "INTERNAL"
    assert code_from_stream_message("unexpected shape for input 'A' for model 'm'") == "INVALID_ARG"
    assert code_from_stream_message("anything a model says") == "UNKNOWN"


def test_stream_left_early_leaves_server_serving(server: TritonServer) -> None:
    started = time.monotonic()
    for response in server.stream("repeat", repeat_inputs(3, 20, delay=0.2)):
        assert int(response["INDEX"][0]) == 0
        break
    assert time.monotonic() - started < 3, "leaving a stream early cancels it rather than waiting"
    assert [int(r["INDEX"][0]) for r in server.stream("repeat", repeat_inputs(3, 2))] == [0, 1]


# --------------------------------------------------------------------------- timeouts
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_infer_timeout(server: TritonServer, protocol: str) -> None:
    started = time.monotonic()
    with pytest.raises(InferTimeout) as raised:
        server.client(protocol).infer("slow", {"SECONDS": np.array([2.0], np.float32)}, timeout=0.5)
    assert time.monotonic() - started < 1.8
    assert raised.value.code == "UNAVAILABLE" and isinstance(raised.value, InferError)
    # A view's default timeout applies when the call gives none.
    with pytest.raises(InferTimeout):
        server.client(protocol, timeout=0.5).infer("slow", {"SECONDS": np.array([2.0], np.float32)})


def test_stream_timeout(server: TritonServer) -> None:
    started = time.monotonic()
    received = []
    with pytest.raises(InferTimeout):
        for response in server.stream("repeat", repeat_inputs(1, 10, delay=0.4), timeout=1.0):
            received.append(response)
    assert 1 <= len(received) < 10
    assert time.monotonic() - started < 3
    assert server.is_running()


# --------------------------------------------------------------------------- stub death, model control, stop
def test_killed_stub_fails_requests_and_is_reported_then_reload_recovers() -> None:
    inputs = add_sub_inputs()
    with TritonServer(REPO, load_models=["add_sub", "repeat"], stop_grace=3) as running:
        process = running.process
        stubs = process.stub_processes()
        assert {stub.model for stub in stubs} == {"add_sub", "repeat"}
        # The stubs are tritonserver's children, in its process group.
        assert all(os.getpgid(stub.pid) == process.pid for stub in stubs)
        assert running.health().healthy

        victim = next(stub for stub in stubs if stub.model == "add_sub")
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(victim.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

        for protocol in PROTOCOLS:
            with pytest.raises(InferError) as raised:
                running.client(protocol).infer("add_sub", inputs)
            assert raised.value.code == "INTERNAL", protocol
            assert raised.value.message == f"Stub process '{victim.instance}' is not healthy.", protocol
        # Not restarted, and still READY everywhere Triton reports it.
        assert victim.pid not in {stub.pid for stub in process.stub_processes()}
        assert not [stub for stub in process.stub_processes() if stub.model == "add_sub"]
        assert running.is_model_ready("add_sub") and running.client("http").is_model_ready("add_sub")
        assert next(s for s in running.model_states() if s.name == "add_sub").state == "READY"
        # The other model still serves.
        assert len(list(running.stream("repeat", repeat_inputs(1, 2)))) == 2
        # health() reports the dead stub.
        health = running.health()
        assert not health.healthy
        assert [(stub.model, stub.pid) for stub in health.dead_stubs] == [("add_sub", victim.pid)]
        assert health.unhealthy_models == ["add_sub"]
        assert "stub process" in health.describe()

        # After a failed request the unload never completes ...
        with pytest.raises(InferTimeout):
            running.unload_model("add_sub", timeout=3)
        assert next(s for s in running.model_states() if s.name == "add_sub").state == "UNLOADING"
        # ... but loading the model again starts a fresh stub that serves.
        running.load_model("add_sub")
        result = running.infer("add_sub", inputs)
        np.testing.assert_array_equal(result["SUM"], inputs["INPUT0"] + inputs["INPUT1"])
        assert running.health().healthy
        all_pids = [process.pid, *(stub.pid for stub in process.stub_processes())]
        prefix = process.shm_prefix
        assert list(Path("/dev/shm").glob(f"{prefix}*"))

    # The stuck instance keeps tritonserver from exiting: stop() kills it after the grace period.
    assert process.returncode == -signal.SIGKILL
    assert not any(pid_alive(pid) for pid in all_pids)
    assert process.leftover_processes() == [] and find_stub_processes(prefix) == []
    assert list(Path("/dev/shm").glob(f"{prefix}*")) == []


def test_explicit_mode_load_and_unload_after_a_port_clash(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first ports offered clash with a listening socket: start() retries on fresh ones.
    import pbkit.testing.server as server_module

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    offers = [[busy_port, *find_free_ports(2)]]
    monkeypatch.setattr(
        server_module,
        "find_free_ports",
        lambda count, host: offers.pop() if offers else find_free_ports(count, host),
    )
    with busy, TritonServer(REPO, explicit=True, load_models=["echo_bytes"], protocol="http") as running:
        assert offers == [] and busy_port not in (running.http_port, running.grpc_port, running.metrics_port)
        states = {state.name: state for state in running.model_states()}
        assert states["echo_bytes"].ready and states["add_sub"].state == ""
        assert running.health().healthy, "models never loaded are not failures"
        with pytest.raises(InferError) as raised:
            running.infer("add_sub", add_sub_inputs())
        assert raised.value.code == "NOT_FOUND"
        running.load_model("add_sub")
        assert running.client("grpc").is_model_ready("add_sub")
        running.unload_model("add_sub")
        assert not running.is_model_ready("add_sub")
        assert running.health().healthy, "an explicit unload is not a failure"
        for protocol in PROTOCOLS:
            with pytest.raises(InferError) as raised:
                running.client(protocol).load_model("no_such_model")
            assert raised.value.code == "INTERNAL", protocol
            assert "failed to load 'no_such_model'" in raised.value.message, protocol
        process = running.process
        started = time.monotonic()
    assert time.monotonic() - started < 8, "a healthy server stops on SIGINT, well within the grace period"
    assert process.returncode == 0
    assert process.leftover_processes() == []


# --------------------------------------------------------------------------- serve_repository
def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        lines.put(line.rstrip("\n"))


@pytest.mark.parametrize(
    ("stop_signal", "load_models"),
    [(signal.SIGINT, None), (signal.SIGTERM, ["add_sub", "broken_init"])],
    ids=["SIGINT-all-models", "SIGTERM-explicit-two"],
)
def test_serve_repository_stops_everything_on_signal(
    stop_signal: signal.Signals, load_models: list[str] | None
) -> None:
    http, grpc, metrics = find_free_ports(3)
    code = (
        "import sys; from pbkit.server.serve import serve_repository; "
        f"sys.exit(serve_repository({str(REPO)!r}, http_port={http}, grpc_port={grpc}, metrics_port={metrics}, "
        f"load_models={load_models!r}))"
    )
    loaded = ALL_MODELS if load_models is None else set(load_models)
    serving = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(serving.stdout, lines), daemon=True)
    reader.start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any("Press Ctrl-C to stop." in line for line in output):
            assert time.monotonic() < deadline, "\n".join(output)
            assert serving.poll() is None, "\n".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "\n".join(output)
        server_pid = int(re.search(r"tritonserver is ready \(pid (\d+)", text).group(1))  # type: ignore[union-attr]
        stub_pids = children_of(server_pid)
        assert len(stub_pids) == len(loaded) - 1  # one stub per loaded instance; broken_init has none

        assert f"HTTP     http://127.0.0.1:{http}" in text
        assert f"gRPC     127.0.0.1:{grpc}" in text
        assert f"metrics  http://127.0.0.1:{metrics}/metrics" in text
        assert re.search(r"^add_sub\s+1\s+READY\s*$", text, re.MULTILINE)
        assert re.search(
            r"^broken_init\s+1\s+UNAVAILABLE\s+Internal: RuntimeError: weights file is missing",
            text,
            re.MULTILINE,
        )
        not_loaded = len(ALL_MODELS) - len(loaded)
        summary = f"{len(loaded) - 1} of {len(loaded)} model(s) ready"
        assert summary + (f", {not_loaded} not loaded." if not_loaded else ".") in text
        if not_loaded:
            assert re.search(r"^slow\s+-\s+NOT LOADED\s*$", text, re.MULTILINE)
        assert "Started GRPCInferenceService" in text, "server logs are streamed"

        serving.send_signal(stop_signal)
        assert serving.wait(timeout=60) == 0
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()
    reader.join(timeout=10)
    while not lines.empty():
        output.append(lines.get())
    assert output[-1] == "pbkit: stopped"
    assert not pid_alive(server_pid)
    assert not any(pid_alive(pid) for pid in stub_pids)


def test_serve_repository_reports_a_server_that_dies() -> None:
    # Called off the main thread, serve_repository installs no signal handlers and stops on stop_event.
    http, grpc, metrics = find_free_ports(3)
    output = io.StringIO()
    stop = threading.Event()
    result: list[int] = []
    serving = threading.Thread(
        target=lambda: result.append(
            serve_repository(
                REPO,
                http_port=http,
                grpc_port=grpc,
                metrics_port=metrics,
                load_models=["add_sub"],
                stream_logs=False,
                out=output,
                stop_event=stop,
            )
        )
    )
    serving.start()
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C to stop." not in output.getvalue():
            assert serving.is_alive() and time.monotonic() < deadline, output.getvalue()
            time.sleep(0.2)
        server_pid = int(re.search(r"tritonserver is ready \(pid (\d+)", output.getvalue()).group(1))  # type: ignore[union-attr]
        stub_pids = children_of(server_pid)
        assert len(stub_pids) == 1
        os.kill(server_pid, signal.SIGKILL)
        serving.join(timeout=60)
    finally:
        stop.set()
        serving.join(timeout=60)
    assert result == [EXIT_FAILED]
    assert "tritonserver exited by itself with status -9" in output.getvalue()
    assert not any(pid_alive(pid) for pid in [server_pid, *stub_pids])
