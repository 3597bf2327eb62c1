"""Fault injection on the real tritonserver (one explicit-mode server for the module) and on LocalTriton.

* ``predict`` raises for a random subset of requests under concurrent load: only those fail, each
  with its own exception's message, while the others get correct results from the same batches;
* a BLS submodel that was never loaded, or is unloaded, gives a clear error at once (no hang);
* ``setup`` raises: the load fails with the exception text and the other models keep serving;
* an instance's Python stub process is killed: its requests (the one in flight included) fail with
  INTERNAL "Stub process '<instance>' is not healthy.", ``health()`` names it, reloading recovers;
* every client call has a timeout: a model that does not answer in time gives ``InferTimeout``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reliability_contracts import RELIABILITY_PROJECT

from pbkit.build import build
from pbkit.testing.client import InferError
from pbkit.testing.server import InferTimeout, TritonServer

FAULT_DIVISOR = 7
SETUP_FAILURE = "setup failed on purpose: weights file 'missing-weights.bin' not found"
FAULT_MODELS = ["faulty", "bls_caller", "sleeper"]
LOAD_REQUESTS = 400
LOAD_CONCURRENCY = 32


@pytest.fixture(scope="module")
def fault_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("faults") / "repo"
    build(RELIABILITY_PROJECT, repository)
    return repository


@pytest.fixture(scope="module")
def fault_server(fault_repository: Path) -> Iterator[TritonServer]:
    """Explicit model control: ``bls_target`` and ``setup_fails`` start unloaded."""
    with TritonServer(fault_repository, load_models=FAULT_MODELS, timeout=60, stop_grace=3) as server:
        yield server


@pytest.fixture(scope="module")
def fault_local(fault_repository: Path) -> Iterator[Any]:
    from pbkit.testing.local import LocalTriton

    with LocalTriton(fault_repository, models=[*FAULT_MODELS, "setup_fails"], timeout=60) as local:
        yield local


def statistics(server: TritonServer, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/stats", timeout=10) as response:
        return json.loads(response.read())["model_stats"][0]


def fault_load(client_for: Any) -> dict[str, int]:
    """:data:`LOAD_REQUESTS` requests of 1-3 random rows at :data:`LOAD_CONCURRENCY`; checks every answer."""
    rng = np.random.default_rng(20240611)
    requests = [rng.integers(1, 10_000, size=(int(rng.integers(1, 4)), 1)) for _ in range(LOAD_REQUESTS)]

    def send(index: int) -> dict[str, np.ndarray] | InferError:
        try:
            return client_for(index).infer("faulty", {"X": requests[index]}, timeout=60)
        except InferError as error:
            return error

    with ThreadPoolExecutor(LOAD_CONCURRENCY) as pool:
        answers = list(pool.map(send, range(LOAD_REQUESTS)))
    counts = {"ok": 0, "failed": 0}
    for x, answer in zip(requests, answers, strict=True):
        bad = x[x % FAULT_DIVISOR == 0]
        if bad.size:
            assert isinstance(answer, InferError), f"request {x.ravel().tolist()} should have failed"
            assert answer.code == "INTERNAL"
            assert answer.message == f"RuntimeError: injected fault for value {int(bad[0])}"
            counts["failed"] += 1
        else:
            assert not isinstance(answer, InferError), f"request {x.ravel().tolist()} failed: {answer}"
            np.testing.assert_array_equal(answer["Y"], x * 3)
            counts["ok"] += 1
    assert counts["failed"] > LOAD_REQUESTS // 10 and counts["ok"] > LOAD_REQUESTS // 2, counts
    return counts


# --------------------------------------------------------------------------- predict raises under load
@pytest.mark.server
def test_predict_faults_fail_only_their_requests_under_load(fault_server: TritonServer) -> None:
    before = statistics(fault_server, "faulty")
    views = [fault_server.client("grpc"), fault_server.client("http")]
    fault_load(lambda index: views[index % 2])
    after = statistics(fault_server, "faulty")
    executions = after["execution_count"] - before["execution_count"]
    # Failing and passing requests shared batches: fewer executions than requests.
    assert executions < LOAD_REQUESTS / 2, f"{executions} executions for {LOAD_REQUESTS} requests"
    assert not fault_server.health().dead_stubs


def test_predict_faults_fail_only_their_requests_in_local_triton(fault_local: Any) -> None:
    fault_load(lambda index: fault_local)
    assert max(fault_local.batch_sizes("faulty")) > 1, "no requests were batched together"


# --------------------------------------------------------------------------- BLS submodel missing
BLS_FAILURE = (
    "SubmodelError: submodel 'bls_target' failed: Model bls_target - Error when running inference: "
    "Failed for execute the inference request. Model 'bls_target' is not ready."
)


@pytest.mark.server
def test_missing_or_unloaded_bls_submodel_fails_fast_and_clearly(fault_server: TritonServer) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for protocol in ("grpc", "http"):
        started = time.monotonic()
        with pytest.raises(InferError) as never_loaded:
            fault_server.client(protocol).infer("bls_caller", {"X": x}, timeout=30)
        assert time.monotonic() - started < 5
        assert never_loaded.value.code == "INTERNAL"
        assert never_loaded.value.message == BLS_FAILURE
    fault_server.load_model("bls_target")
    try:
        np.testing.assert_array_equal(fault_server.infer("bls_caller", {"X": x})["RESULT"], x * 2 + 1)
    finally:
        fault_server.unload_model("bls_target")
    started = time.monotonic()
    with pytest.raises(InferError) as unloaded:
        fault_server.infer("bls_caller", {"X": x}, timeout=30)
    assert time.monotonic() - started < 5
    assert (unloaded.value.code, unloaded.value.message) == ("INTERNAL", BLS_FAILURE)
    assert fault_server.is_model_ready("bls_caller")


def test_missing_bls_submodel_in_local_triton(fault_local: Any) -> None:
    with pytest.raises(InferError) as raised:
        fault_local.infer("bls_caller", {"X": np.ones((1, 4), np.float32)}, timeout=30)
    assert (raised.value.code, raised.value.message) == ("INTERNAL", BLS_FAILURE)


# --------------------------------------------------------------------------- setup raises
@pytest.mark.server
def test_setup_failure_is_reported_with_its_text_and_others_serve(fault_server: TritonServer) -> None:
    for protocol in ("grpc", "http"):
        with pytest.raises(InferError) as raised:
            fault_server.client(protocol).load_model("setup_fails")
        # Triton answers a failed load with INVALID_ARG over both protocols.
        assert raised.value.code == "INVALID_ARG"
        assert raised.value.message.startswith(
            f"load failed for model 'setup_fails': version 1 is at UNAVAILABLE state: Internal: RuntimeError: {SETUP_FAILURE}"
        )
    state = next(s for s in fault_server.model_states() if s.name == "setup_fails")
    assert state.state == "UNAVAILABLE" and state.failed
    assert state.reason.startswith(f"Internal: RuntimeError: {SETUP_FAILURE}")
    assert "reliability_models.py" in state.reason, "the reason carries the traceback"
    health = fault_server.health()
    assert "setup_fails" in health.unhealthy_models and SETUP_FAILURE in health.describe()
    with pytest.raises(InferError) as not_served:
        fault_server.infer("setup_fails", {"X": np.ones((1, 1))})
    assert not_served.value.code == "NOT_FOUND"
    assert not_served.value.message == "Request for unknown model: 'setup_fails' has no available versions"
    assert fault_server.infer("faulty", {"X": np.array([[2]])})["Y"].tolist() == [[6]]


def test_setup_failure_in_local_triton(fault_local: Any) -> None:
    state = next(s for s in fault_local.model_states() if s.name == "setup_fails")
    assert state.state == "UNAVAILABLE"
    assert state.reason.startswith(f"Internal: RuntimeError: {SETUP_FAILURE}")
    with pytest.raises(InferError) as not_served:
        fault_local.infer("setup_fails", {"X": np.ones((1, 1))})
    assert not_served.value.code == "NOT_FOUND"
    assert not_served.value.message == "Request for unknown model: 'setup_fails' has no available versions"
    assert fault_local.infer("faulty", {"X": np.array([[2]])})["Y"].tolist() == [[6]]


# --------------------------------------------------------------------------- timeouts
@pytest.mark.server
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_call_has_a_timeout(fault_server: TritonServer, protocol: str) -> None:
    started = time.monotonic()
    with pytest.raises(InferTimeout) as raised:
        fault_server.client(protocol).infer(
            "sleeper", {"SECONDS": np.array([[3.0]], np.float32)}, timeout=0.5
        )
    assert time.monotonic() - started < 2.5
    assert raised.value.code == "UNAVAILABLE" and "no answer within 0.5 s" in raised.value.message
    # The server is still up and other models answer at once.
    assert fault_server.infer("faulty", {"X": np.array([[3]])}, timeout=10)["Y"].tolist() == [[9]]


def test_local_triton_call_times_out_while_waiting_for_an_instance(fault_local: Any) -> None:
    """LocalTriton runs ``execute`` on the calling thread, so its timeout covers the wait for a free
    instance (not the model's own run): a request queued behind a slow one times out."""
    busy = threading.Thread(
        target=lambda: fault_local.infer("sleeper", {"SECONDS": np.array([[2.0]], np.float32)}, timeout=30)
    )
    busy.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(InferTimeout) as raised:
            fault_local.infer("sleeper", {"SECONDS": np.array([[0.0]], np.float32)}, timeout=0.5)
        assert time.monotonic() - started < 1.5
        assert raised.value.code == "UNAVAILABLE" and "no answer within 0.5 s" in raised.value.message
    finally:
        busy.join()


# --------------------------------------------------------------------------- stub killed
@pytest.mark.server
def test_killed_stub_fails_its_requests_and_is_reported_then_reload_recovers(
    fault_server: TritonServer,
) -> None:
    victim = next(stub for stub in fault_server.process.stub_processes() if stub.model == "sleeper")
    in_flight: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            in_flight["answer"] = fault_server.infer(
                "sleeper", {"SECONDS": np.array([[20.0]], np.float32)}, timeout=60
            )
        except InferError as error:
            in_flight["answer"] = error
        in_flight["answered"] = time.monotonic()

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1.0)
    killed = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=60)
    expected = ("INTERNAL", f"Stub process '{victim.instance}' is not healthy.")
    answer = in_flight["answer"]
    assert isinstance(answer, InferError) and (answer.code, answer.message) == expected
    # It failed soon after the kill, long before the model would have answered.
    assert in_flight["answered"] - killed < 10
    for protocol in ("grpc", "http"):
        with pytest.raises(InferError) as later:
            fault_server.client(protocol).infer(
                "sleeper", {"SECONDS": np.array([[0.0]], np.float32)}, timeout=30
            )
        assert (later.value.code, later.value.message) == expected
    # Triton still lists the model as ready; health() tells the truth.
    assert fault_server.is_model_ready("sleeper")
    health = fault_server.health()
    assert [(stub.model, stub.pid) for stub in health.dead_stubs] == [("sleeper", victim.pid)]
    assert f"instance '{victim.instance}' has exited" in health.describe()
    assert fault_server.infer("faulty", {"X": np.array([[1]])})["Y"].tolist() == [[3]]
    # Recovery: unload (which may never complete once a request reached the dead instance), then load.
    with contextlib.suppress(InferTimeout):
        fault_server.unload_model("sleeper", timeout=3)
    fault_server.load_model("sleeper")
    answer = fault_server.infer("sleeper", {"SECONDS": np.array([[0.0]], np.float32)})
    assert int(answer["PID"][0, 0]) != victim.pid
    health = fault_server.health()
    assert not health.dead_stubs and "sleeper" not in health.unhealthy_models, health.describe()
