"""The BLS test project in ``LocalTriton``: submodels as stubs or as their Python variants.

No server: everything runs in this process, so stubs can be plain functions sharing a
``threading.Barrier`` or recording the requests they receive.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bls_helpers import IsolatedModules, Towers, copy_project

from pbkit.build import build
from pbkit.testing.client import InferError
from pbkit.testing.local import LocalTriton

TOWER_OUTPUTS = ("embedding", "projection", "score")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("bls") / "bls_project")


@pytest.fixture(scope="module")
def repository(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("repository")
    with IsolatedModules():
        build(project, repository, variant="python")
    return repository


@pytest.fixture(scope="module")
def networks(project: Path) -> Any:
    with IsolatedModules():
        sys.path.insert(0, str(project))
        try:
            return importlib.import_module("bls_networks")
        finally:
            sys.path.remove(str(project))


def features(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)


def assert_towers(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(outputs) == sorted(TOWER_OUTPUTS)
    for name in TOWER_OUTPUTS:
        np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("orchestrator", ["bls_two_tower", "bls_sequential"])
def test_stubs_and_python_variants_give_the_same_outputs(
    repository: Path, networks: Any, orchestrator: str
) -> None:
    towers = Towers(networks)
    inputs = features(4, seed=1)
    with LocalTriton(repository, stubs=towers.stubs()) as local:
        stubbed = local.infer(orchestrator, {"features": inputs})
    with LocalTriton(repository) as local:
        variants = local.infer(orchestrator, {"features": inputs})
    assert_towers(stubbed, towers.expected(inputs))
    assert_towers(variants, stubbed)


def test_fan_out_calls_both_submodels_at_once(repository: Path, networks: Any) -> None:
    towers = Towers(networks, threading.Barrier(2, timeout=10))
    inputs = features(2, seed=2)
    with LocalTriton(repository, stubs=towers.stubs()) as local:
        outputs = local.infer("bls_two_tower", {"features": inputs})
    assert_towers(outputs, Towers(networks).expected(inputs))


def test_serial_calls_break_the_barrier_instead_of_hanging(repository: Path, networks: Any) -> None:
    towers = Towers(networks, threading.Barrier(2, timeout=1))
    with LocalTriton(repository, stubs=towers.stubs()) as local, pytest.raises(InferError) as raised:
        local.infer("bls_sequential", {"features": features(2, seed=3)})
    assert raised.value.code == "INTERNAL"
    assert "SubmodelError: submodel 'bls_encoder' failed: BrokenBarrierError" in raised.value.message


def test_a_failing_submodel_fails_only_the_affected_request_of_a_batch(
    repository: Path, networks: Any
) -> None:
    batches = [features(2, seed=10 + i) for i in range(3)]
    batches[1][0, 2] = np.nan
    with LocalTriton(repository) as local:
        results = local.infer_many(
            "bls_two_tower", [{"features": b} for b in batches], return_exceptions=True
        )
        assert local.batch_sizes("bls_two_tower") == [3]  # the three requests came in one execute
        # one BLS call for the whole batch, which failed, then one per request
        assert sum(local.batch_sizes("bls_encoder")) == 4
    towers = Towers(networks)
    assert_towers(results[0], towers.expected(batches[0]))
    assert_towers(results[2], towers.expected(batches[2]))
    error = results[1]
    assert isinstance(error, InferError) and error.code == "INTERNAL"
    assert "SubmodelError: submodel 'bls_" in error.message and "features must be finite" in error.message


def test_stub_errors_keep_their_text(repository: Path, networks: Any) -> None:
    def broken(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise ValueError("engine exploded")

    stubs = {**Towers(networks).stubs(), "bls_projector": broken}
    with LocalTriton(repository, stubs=stubs) as local, pytest.raises(InferError) as raised:
        local.infer("bls_sequential", {"features": features(1, seed=4)})
    assert (
        "SubmodelError: submodel 'bls_projector' failed: ValueError: engine exploded" in raised.value.message
    )


def test_a_missing_output_is_an_error_naming_it(repository: Path, networks: Any) -> None:
    def wrong_output(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"something_else": inputs["features"]}

    stubs = {**Towers(networks).stubs(), "bls_encoder": wrong_output}
    with LocalTriton(repository, stubs=stubs) as local, pytest.raises(InferError) as raised:
        local.infer("bls_sequential", {"features": features(1, seed=5)})
    assert raised.value.message.startswith(
        "SubmodelError: submodel 'bls_encoder' failed: the response lacks requested output(s) ['embedding']"
    )


def test_a_submodel_that_is_not_loaded(repository: Path) -> None:
    loaded = ["bls_two_tower", "bls_projector"]
    with LocalTriton(repository, models=loaded) as local, pytest.raises(InferError) as raised:
        local.infer("bls_two_tower", {"features": features(1, seed=6)})
    assert "SubmodelError: submodel 'bls_encoder' failed: Model bls_encoder" in raised.value.message
    assert "is not ready" in raised.value.message


class Recorder:
    """A stub with ``execute`` that records the parameters and timeout of each request it gets."""

    def __init__(self, function: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
        self.function = function
        self.seen: list[tuple[dict[str, Any], int]] = []

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            self.seen.append((json.loads(request.parameters()), request.timeout()))
            outputs = self.function({t.name(): t.as_numpy() for t in request.inputs()})
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in outputs.items()]))
        return responses


def test_parameters_and_timeouts_reach_the_submodels(repository: Path, networks: Any) -> None:
    towers = Towers(networks)
    encoder, projector = Recorder(towers.encoder), Recorder(towers.projector)
    with LocalTriton(repository, stubs={"bls_encoder": encoder, "bls_projector": projector}) as local:
        local.infer("bls_two_tower", {"features": features(2, seed=7)}, parameters={"tag": "abc", "beam": 4})
        local.infer("bls_sequential", {"features": features(2, seed=8)}, parameters={"tag": "seq"})
    # bls_two_tower passes timeout_us=60_000_000; bls_sequential passes none (0)
    assert encoder.seen == [({"tag": "abc", "beam": 4}, 60_000_000), ({"tag": "seq"}, 0)]
    assert projector.seen == encoder.seen


@pytest.mark.parametrize("orchestrator", ["bls_count_sum", "bls_count_sum_async"])
def test_decoupled_submodel_is_streamed(repository: Path, orchestrator: str) -> None:
    with LocalTriton(repository) as local:
        outputs = local.infer(orchestrator, {"count": np.array([4], dtype=np.int32)})
    np.testing.assert_array_equal(outputs["steps"], [1, 2, 3, 4])
    np.testing.assert_array_equal(outputs["total"], [10])
