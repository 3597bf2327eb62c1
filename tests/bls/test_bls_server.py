"""The BLS test project on the real local tritonserver, submodels built as Python variants.

One server per module (about 15 s to start, plus torch imports in the towers' stubs).
"""

from __future__ import annotations

import concurrent.futures
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bls_helpers import IsolatedModules, Towers, copy_project, write_ort_project

from pbkit.build import build
from pbkit.export import export_onnx
from pbkit.testing.client import InferError
from pbkit.testing.local import LocalTriton
from pbkit.testing.server import TritonServer

pytestmark = pytest.mark.server

TOWER_OUTPUTS = ("embedding", "projection", "score")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("bls") / "bls_project")


@pytest.fixture(scope="module")
def networks(project: Path) -> Any:
    with IsolatedModules():
        sys.path.insert(0, str(project))
        try:
            return importlib.import_module("bls_networks")
        finally:
            sys.path.remove(str(project))


@pytest.fixture(scope="module")
def reference(networks: Any) -> SimpleNamespace:
    """The towers run directly in torch, as the expected outputs."""
    encoder, projector = networks.make_encoder(), networks.make_projector()

    def towers(features: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            tensor = torch.from_numpy(features)
            embedding = encoder(tensor)["embedding"].numpy()
            projection = projector(tensor).numpy()
        return {
            "embedding": embedding,
            "projection": projection,
            "score": (embedding * projection).sum(1, keepdims=True),
        }

    return SimpleNamespace(towers=towers)


@pytest.fixture(scope="module")
def server(project: Path, networks: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The project and the onnxruntime project (exported first) in one repository, all as Python variants."""
    repository = tmp_path_factory.mktemp("repository")
    ort_folder = write_ort_project(tmp_path_factory.mktemp("ort") / "ort")
    with IsolatedModules():
        report = build(project, repository, variant="python")
        sys.path.insert(0, str(ort_folder))
        try:
            ort_projector = importlib.import_module("ort_submodels").ort_projector
        finally:
            sys.path.remove(str(ort_folder))
            sys.modules.pop("ort_submodels", None)
        export_onnx(
            networks.make_projector(),
            ort_projector,
            {"features": np.zeros((2, 4), np.float32)},
            path=ort_folder / "exported" / "ort_projector.onnx",
            exporter="torchscript",
        )
        report.models += build(ort_folder, repository, variant="python").models
    kinds = {m.name: m.kind for m in report.models}
    assert {kinds[n] for n in ("bls_encoder", "bls_projector", "bls_counter", "ort_projector")} == {
        "python variant"
    }
    with TritonServer(repository) as running:
        yield running


def features(batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)


@pytest.mark.parametrize("orchestrator", ["bls_two_tower", "bls_sequential"])
def test_orchestrators_match_torch(
    server: TritonServer, reference: SimpleNamespace, orchestrator: str
) -> None:
    inputs = features(5, seed=1)
    outputs = server.infer(orchestrator, {"features": inputs})
    expected = reference.towers(inputs)
    assert sorted(outputs) == sorted(TOWER_OUTPUTS)
    for name in TOWER_OUTPUTS:
        np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("orchestrator", ["bls_two_tower", "bls_sequential"])
def test_real_triton_with_python_variants_equals_local_triton_with_stubs(
    server: TritonServer, networks: Any, orchestrator: str
) -> None:
    inputs = features(6, seed=9)
    served = server.infer(orchestrator, {"features": inputs})
    with LocalTriton(server.repository, stubs=Towers(networks).stubs()) as local:
        stubbed = local.infer(orchestrator, {"features": inputs})
    assert sorted(served) == sorted(stubbed) == sorted(TOWER_OUTPUTS)
    for name in TOWER_OUTPUTS:
        np.testing.assert_allclose(served[name], stubbed[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_fan_out_runs_both_towers_at_once(server: TritonServer, tmp_path: Path) -> None:
    meeting = tmp_path / "fan_out"
    meeting.mkdir()
    server.infer(
        "bls_two_tower", {"features": features(2, seed=2)}, parameters={"rendezvous_dir": str(meeting)}
    )
    assert sorted(p.name for p in meeting.iterdir()) == ["bls_encoder", "bls_projector"]


def test_serial_calls_cannot_meet_so_the_rendezvous_would_catch_them(
    server: TritonServer, tmp_path: Path
) -> None:
    meeting = tmp_path / "serial"
    meeting.mkdir()
    with pytest.raises(InferError) as raised:
        server.infer(
            "bls_sequential",
            {"features": features(2, seed=3)},
            parameters={"rendezvous_dir": str(meeting), "rendezvous_timeout_s": "1"},
        )
    assert raised.value.code == "INTERNAL"
    assert "submodel 'bls_encoder' failed" in raised.value.message
    assert "bls_encoder: only ['bls_encoder'] started within 1 s" in raised.value.message


def test_a_failing_submodel_fails_only_the_affected_request(
    server: TritonServer, reference: SimpleNamespace
) -> None:
    batches = [features(2, seed=10 + i) for i in range(6)]
    batches[2][1, 3] = np.nan
    with concurrent.futures.ThreadPoolExecutor(len(batches)) as pool:
        futures = [pool.submit(server.infer, "bls_two_tower", {"features": b}) for b in batches]
    for index, (future, inputs) in enumerate(zip(futures, batches, strict=True)):
        if index == 2:
            error = future.exception()
            assert isinstance(error, InferError) and error.code == "INTERNAL"
            assert "SubmodelError: submodel 'bls_" in error.message
            assert "features must be finite" in error.message
            continue
        outputs = future.result()
        expected = reference.towers(inputs)
        for name in TOWER_OUTPUTS:
            np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-6, atol=1e-6)


def test_sequential_error_names_the_first_submodel(server: TritonServer) -> None:
    inputs = features(1, seed=4)
    inputs[0, 0] = np.inf
    with pytest.raises(InferError) as raised:
        server.infer("bls_sequential", {"features": inputs})
    assert "SubmodelError: submodel 'bls_encoder' failed: features must be finite" in raised.value.message


@pytest.mark.parametrize("orchestrator", ["bls_count_sum", "bls_count_sum_async"])
@pytest.mark.parametrize("count", [0, 1, 5])
def test_decoupled_submodel_is_streamed(server: TritonServer, orchestrator: str, count: int) -> None:
    outputs = server.infer(orchestrator, {"count": np.array([count], dtype=np.int32)})
    np.testing.assert_array_equal(outputs["steps"], np.arange(1, count + 1, dtype=np.int32))
    np.testing.assert_array_equal(outputs["total"], [count * (count + 1) // 2])


def test_submodels_answer_directly_too(server: TritonServer, reference: SimpleNamespace) -> None:
    inputs = features(3, seed=5)
    outputs = server.infer("bls_encoder", {"features": inputs})
    np.testing.assert_allclose(
        outputs["embedding"], reference.towers(inputs)["embedding"], rtol=1e-6, atol=1e-6
    )
    parts = list(server.stream("bls_counter", {"count": np.array([3], dtype=np.int32)}))
    assert [int(p["step"][0]) for p in parts] == [1, 2, 3]


def test_python_variant_running_onnxruntime(server: TritonServer, reference: SimpleNamespace) -> None:
    inputs = features(4, seed=6)
    outputs = server.infer("ort_projector", {"features": inputs})
    np.testing.assert_allclose(outputs["projection"], reference.towers(inputs)["projection"], atol=1e-5)
