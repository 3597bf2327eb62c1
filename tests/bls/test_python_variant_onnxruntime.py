"""A Python variant that runs the exported ONNX file with onnxruntime, shipped through ``extra_files``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from bls_helpers import IsolatedModules, write_ort_project

from pbkit.build import BuildError, build
from pbkit.config import read_config
from pbkit.config.check import check_repository
from pbkit.export import export_onnx
from pbkit.runtime import SetupContext


def import_declaration(folder: Path) -> Any:
    sys.modules.pop("ort_submodels", None)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("ort_submodels")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("ort_submodels", None)


@pytest.fixture
def ort_project(bls: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    folder = write_ort_project(tmp_path / "ort")
    declaration = import_declaration(folder)
    return SimpleNamespace(folder=folder, submodel=declaration.ort_projector, networks=bls.networks)


def export(project: SimpleNamespace) -> None:
    export_onnx(
        project.networks.make_projector(),
        project.submodel,
        {"features": torch.randn(2, 4)},
        path=project.folder / "exported" / "ort_projector.onnx",
        exporter="torchscript",
    )


def test_python_variant_ships_the_onnx_file_and_matches_torch(
    ort_project: SimpleNamespace, tmp_path: Path
) -> None:
    export(ort_project)
    repository = tmp_path / "repository"
    with IsolatedModules():
        build(ort_project.folder, repository, variant="python")
    assert check_repository(repository) == []
    assert read_config(repository / "ort_projector" / "config.pbtxt").backend == "python"
    shipped = repository / "ort_projector" / "1" / "exported" / "ort_projector.onnx"
    assert shipped.read_bytes() == (ort_project.folder / "exported" / "ort_projector.onnx").read_bytes()

    model = ort_project.submodel.python_model_class()()
    model.setup(
        SetupContext(
            model_name="ort_projector",
            model_version=1,
            instance_name="ort_projector_0",
            instance_kind="CPU",
            device_id=0,
            model_dir=repository / "ort_projector",
            config={},
            parameters={},
        )
    )
    features = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    expected = ort_project.networks.make_projector()(torch.from_numpy(features)).detach().numpy()
    np.testing.assert_allclose(model.predict(features=features)["projection"], expected, atol=1e-5)


def test_onnx_variant_of_the_same_declaration(ort_project: SimpleNamespace, tmp_path: Path) -> None:
    export(ort_project)
    repository = tmp_path / "repository"
    with IsolatedModules():
        build(ort_project.folder, repository, variant="onnx")
    assert check_repository(repository) == []
    config = read_config(repository / "ort_projector" / "config.pbtxt")
    assert (config.platform, config.backend) == ("onnxruntime_onnx", "")
    assert sorted(p.name for p in (repository / "ort_projector" / "1").iterdir()) == ["model.onnx"]


def test_python_variant_without_its_file_is_a_build_error(
    ort_project: SimpleNamespace, tmp_path: Path
) -> None:
    with (
        IsolatedModules(),
        pytest.raises(BuildError, match=r"extra file 'exported/ort_projector.onnx' not found"),
    ):
        build(ort_project.folder, tmp_path / "repository", variant="python")
