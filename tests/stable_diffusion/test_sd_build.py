"""Building the stable_diffusion example: configs, the checkpoint parameter, Python variants, exported variants.

The ONNX variant is exported with the project's ``pbkit export`` factory into a copy of the project, built
with ``--variant onnx``, checked with ``pbkit check``'s rules and served by LocalTriton with ONNX Runtime
standing in for Triton's ONNX Runtime backend (the bundled CPU server has none); its images match diffusers.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sd_modules import MODEL_DIR, networks, project_importable, sd_submodels
from sd_serving_support import (
    SIZE,
    build_repository,
    checkpoint_environment,
    diffusers_image,
    mean_pixel_difference,
    small_request,
)

import pbkit
from pbkit.build import BuildError
from pbkit.config import read_config
from pbkit.config.check import check_repository

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def context(name: str, checkpoint: Path | str, model_dir: Path = MODEL_DIR) -> pbkit.SetupContext:
    return pbkit.SetupContext(
        model_name=name,
        model_version=1,
        instance_name=f"{name}_0",
        instance_kind="CPU",
        device_id=0,
        model_dir=model_dir,
        config={},
        parameters={"checkpoint": str(checkpoint), "torch_threads": "1"},
    )


@pytest.fixture(scope="module")
def repository(sd_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("sd_build")
    build_repository(output, sd_checkpoint)
    return output


def test_orchestrator_configs(repository: Path, sd_checkpoint: Path) -> None:
    assert check_repository(repository) == []
    config = read_config(repository / "stable_diffusion" / "config.pbtxt")
    assert config.backend == "python"
    assert config.max_batch_size == 4
    assert config.dynamic_batching.max_queue_delay_microseconds == 50_000
    assert [(t.name, t.optional) for t in config.input] == [
        ("PROMPT", False),
        ("NEGATIVE_PROMPT", True),
        ("STEPS", True),
        ("GUIDANCE_SCALE", True),
        ("SEED", True),
        ("HEIGHT", True),
        ("WIDTH", True),
        ("SCHEDULER", True),
    ]
    assert [(t.name, list(t.dims)) for t in config.output] == [("IMAGE", [-1, -1, 3])]
    assert config.parameters["checkpoint"].string_value == str(sd_checkpoint.resolve())
    assert config.parameters["torch_threads"].string_value == "1"
    assert not config.model_transaction_policy.decoupled
    stream = read_config(repository / "stable_diffusion_stream" / "config.pbtxt")
    assert stream.model_transaction_policy.decoupled
    assert [t.name for t in stream.output] == ["IMAGE", "STEP", "TOTAL_STEPS"]


def test_submodel_configs(repository: Path, sd_checkpoint: Path) -> None:
    shapes = {}
    for name in ("text_encoder", "unet", "vae_decoder"):
        config = read_config(repository / name / "config.pbtxt")
        assert config.backend == "python"
        assert config.max_batch_size == 0
        assert config.parameters["checkpoint"].string_value == str(sd_checkpoint.resolve())
        shapes[name] = {t.name: list(t.dims) for t in (*config.input, *config.output)}
    assert shapes == {
        "text_encoder": {"input_ids": [-1, 77], "text_embeddings": [-1, 77, 32]},
        "unet": {
            "sample": [-1, 4, -1, -1],
            "timestep": [1],
            "encoder_hidden_states": [-1, 77, 32],
            "latent": [-1, 4, -1, -1],
        },
        "vae_decoder": {"latent": [-1, 4, -1, -1], "images": [-1, 3, -1, -1]},
    }
    shipped = sorted(path.name for path in (repository / "unet" / "1").glob("*.py"))
    assert shipped == sorted(
        ["model.py", *(path.name for path in MODEL_DIR.glob("*.py"))]
    )  # the whole project next to the generated model.py


def test_default_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(sd_submodels.CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(sd_submodels.CHECKPOINTS_ENV, raising=False)
    assert sd_submodels.default_checkpoint() == str(MODEL_DIR.parents[1] / "checkpoints" / "sd-tiny")
    monkeypatch.setenv(sd_submodels.CHECKPOINTS_ENV, str(tmp_path))
    assert sd_submodels.default_checkpoint() == str(tmp_path / "sd-tiny")
    monkeypatch.setenv(sd_submodels.CHECKPOINT_ENV, str(tmp_path / "real"))
    assert sd_submodels.default_checkpoint() == str(tmp_path / "real")


def test_hidden_size_is_any_without_a_checkpoint(tmp_path: Path) -> None:
    assert sd_submodels.text_hidden_size(tmp_path) == -1


def test_a_missing_checkpoint_is_a_clear_setup_error(tmp_path: Path) -> None:
    model = sd_submodels.unet.python_model_class()()
    with pytest.raises(FileNotFoundError, match=r"is not a diffusers checkpoint .*tiny_checkpoint\.py"):
        model.setup(context("unet", tmp_path / "nowhere"))


def test_python_variant_runs_stacked_requests(
    sd_checkpoint: Path, sd_torch_networks: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside Triton: no triton_python_backend_utils, even if another test installed the harness's fake.
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", None)
    model = sd_submodels.unet.python_model_class()()
    with project_importable():
        model.setup(context("unet", sd_checkpoint))
    dims = networks.ModelDims.from_checkpoint(sd_checkpoint)
    requests = [
        networks.example_inputs("unet", dims, batch=1, image_size=(SIZE, SIZE), seed=s) for s in (1, 2)
    ]
    stacked = {name: np.stack([inputs[name] for inputs in requests]) for name in requests[0]}
    latent = model.predict(**stacked)["latent"]
    assert latent.shape == (2, 2, 4, SIZE // 2, SIZE // 2)
    for index, inputs in enumerate(requests):
        np.testing.assert_allclose(latent[index], sd_torch_networks["unet"](**inputs)["latent"], atol=1e-6)


@pytest.fixture(scope="module")
def onnx_project(sd_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with its ONNX variants exported by the ``pbkit export`` factory."""
    from pbkit.export import export_target

    project = tmp_path_factory.mktemp("sd_onnx") / "stable_diffusion"
    project.mkdir()
    for source in MODEL_DIR.glob("*.py"):
        shutil.copy(source, project / source.name)
    with project_importable():
        targets = importlib.import_module("export_variants").targets(sd_checkpoint)
        for target in targets:
            result = export_target(
                target, formats=["onnx"], output=project / "onnx", exporter="torchscript", atol=1e-4
            )
            assert result.ok, result.summary()
    return project


def test_export_targets_cover_every_accepted_size(sd_checkpoint: Path) -> None:
    with project_importable():
        export_variants = importlib.import_module("export_variants")
        dims = networks.ModelDims.from_checkpoint(sd_checkpoint)
        profile = export_variants.shape_profile(dims)
    assert (profile.min_image, profile.opt_image, profile.max_image) == ((4, 4), (64, 64), (128, 128))
    assert (profile.min_batch, profile.max_batch) == (1, 4)


def test_onnx_variant_build_matches_diffusers(
    onnx_project: Path, sd_checkpoint: Path, diffusers_pipeline: Any, tmp_path: Path
) -> None:
    from pbkit.testing.local import LocalTriton

    repository = tmp_path / "repository"
    report = build_repository(repository, sd_checkpoint, project=onnx_project, variant="onnx")
    kinds = {model.name: model.kind for model in report.models}
    assert kinds == {
        "stable_diffusion": "python",
        "stable_diffusion_stream": "python",
        "text_encoder": "onnx",
        "unet": "onnx",
        "vae_decoder": "onnx",
    }
    assert check_repository(repository) == []
    dims = networks.ModelDims.from_checkpoint(sd_checkpoint)
    specs = networks.network_specs(dims)
    stubs = {}
    for name in ("text_encoder", "unet", "vae_decoder"):
        config = read_config(repository / name / "config.pbtxt")
        assert config.platform == "onnxruntime_onnx"
        model_file = repository / name / "1" / "model.onnx"
        assert model_file.read_bytes() == (onnx_project / "onnx" / f"{name}.onnx").read_bytes()
        session = networks.OnnxRuntimeNetwork(model_file, specs[name])
        stubs[name] = lambda inputs, session=session: session(**inputs)
    with LocalTriton(repository, stubs=stubs, timeout=300) as triton:
        image = triton.infer(
            "stable_diffusion", small_request(seed=4, scheduler="dpm_solver", negative_prompt="blurry")
        )["IMAGE"][0]
    expected = diffusers_image(
        diffusers_pipeline,
        prompt="a photo of a cat",
        negative_prompt="blurry",
        seed=4,
        scheduler="dpm_solver",
        guidance_scale=7.5,
    )
    assert mean_pixel_difference(image, expected) <= 1e-3


def test_tensorrt_variant_needs_its_engines(sd_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"submodel '\w+': variant tensorrt needs .*engines/\w+\.plan"):
        build_repository(tmp_path / "repository", sd_checkpoint, variant="tensorrt")


def test_declarations_import_without_torch(sd_checkpoint: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import text_to_image, sd_submodels, export_variants; "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules; "
        "print(sd_submodels.PARAMETERS['checkpoint'])"
    )
    with checkpoint_environment(sd_checkpoint):
        done = subprocess.run(
            [sys.executable, "-c", code, str(MODEL_DIR)], capture_output=True, text=True, check=False
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sd_checkpoint.resolve())
