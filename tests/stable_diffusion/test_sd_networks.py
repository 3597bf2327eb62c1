"""Submodel IO specs, numpy calling convention, ONNX export parity and TensorRT build commands."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sd_modules import networks as nw
from sd_modules import pipeline as sd

SD15_DIMS = nw.ModelDims(
    text_hidden_size=768,
    latent_channels=4,
    vae_scale_factor=8,
    unet_downsample_factor=8,
    vae_scaling_factor=0.18215,
    default_sample_size=64,
)


@pytest.fixture(scope="module")
def onnx_repository(sd_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return nw.export_checkpoint_onnx(sd_checkpoint, tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="module")
def torch_modules(sd_checkpoint: Path) -> dict[str, Any]:
    return nw.load_networks(sd_checkpoint)


def test_io_specs_follow_the_tensorrt_demo() -> None:
    specs = nw.network_specs(SD15_DIMS)
    summary = {
        name: (
            [(t.name, t.datatype, t.shape) for t in spec.inputs],
            [(t.name, t.datatype, t.shape) for t in spec.outputs],
        )
        for name, spec in specs.items()
    }
    assert summary == {
        "text_encoder": ([("input_ids", "INT32", (-1, 77))], [("text_embeddings", "FP32", (-1, 77, 768))]),
        "unet": (
            [
                ("sample", "FP32", (-1, 4, -1, -1)),
                ("timestep", "FP32", (1,)),
                ("encoder_hidden_states", "FP32", (-1, 77, 768)),
            ],
            [("latent", "FP32", (-1, 4, -1, -1))],
        ),
        "vae_decoder": ([("latent", "FP32", (-1, 4, -1, -1))], [("images", "FP32", (-1, 3, -1, -1))]),
    }


def test_dims_of_a_stable_diffusion_15_layout(tmp_path: Path) -> None:
    configs = {
        "text_encoder": {"hidden_size": 768, "max_position_embeddings": 77},
        "unet": {"block_out_channels": [320, 640, 1280, 1280], "in_channels": 4, "sample_size": 64},
        "vae": {"block_out_channels": [128, 256, 512, 512], "scaling_factor": 0.18215},
    }
    for folder, config in configs.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.json").write_text(json.dumps(config))
    assert nw.ModelDims.from_checkpoint(tmp_path) == SD15_DIMS


def test_trtexec_commands_for_stable_diffusion_15() -> None:
    profile = nw.ShapeProfile()  # batch 1..4 (opt 1), images 256..768 (opt 512)
    commands = {
        name: nw.trtexec_command(name, f"{name}/1/model.onnx", f"{name}/1/model.plan", SD15_DIMS, profile)
        for name in nw.NETWORK_NAMES
    }
    assert commands["text_encoder"] == (
        "trtexec --onnx=text_encoder/1/model.onnx --saveEngine=text_encoder/1/model.plan "
        "--minShapes=input_ids:1x77 --optShapes=input_ids:2x77 --maxShapes=input_ids:8x77 --fp16"
    )
    assert commands["unet"] == (
        "trtexec --onnx=unet/1/model.onnx --saveEngine=unet/1/model.plan "
        "--minShapes=sample:1x4x32x32,encoder_hidden_states:1x77x768 "
        "--optShapes=sample:2x4x64x64,encoder_hidden_states:2x77x768 "
        "--maxShapes=sample:8x4x96x96,encoder_hidden_states:8x77x768 --fp16"
    )
    assert commands["vae_decoder"] == (
        "trtexec --onnx=vae_decoder/1/model.onnx --saveEngine=vae_decoder/1/model.plan "
        "--minShapes=latent:1x4x32x32 --optShapes=latent:1x4x64x64 --maxShapes=latent:4x4x96x96 --fp16"
    )
    fp32 = nw.trtexec_command(
        "unet", "a b.onnx", "a.plan", SD15_DIMS, profile, fp16=False, extra_args=["--verbose"]
    )
    assert fp32.startswith("trtexec '--onnx=a b.onnx' ")
    assert fp32.endswith("--maxShapes=sample:8x4x96x96,encoder_hidden_states:8x77x768 --verbose")


def test_numpy_calling_convention_checks_inputs(sd_torch_networks: dict[str, Any]) -> None:
    text_encoder = sd_torch_networks["text_encoder"]
    ids = np.full((2, 77), 49407, dtype=np.int32)
    output = text_encoder(input_ids=ids)
    assert list(output) == ["text_embeddings"]
    assert output["text_embeddings"].shape == (2, 77, 32)
    assert output["text_embeddings"].dtype == np.float32
    with pytest.raises(TypeError, match="input 'input_ids' must be INT32, got int64"):
        text_encoder(input_ids=ids.astype(np.int64))
    with pytest.raises(ValueError, match=r"must have shape \[-1, 77\], got \[2, 76\]"):
        text_encoder(input_ids=ids[:, :76])
    with pytest.raises(ValueError, match=r"expects inputs \['input_ids'\], got \['ids'\]"):
        text_encoder(ids=ids)
    unet = sd_torch_networks["unet"]
    latent = unet(
        sample=np.zeros((3, 4, 8, 12), np.float32),
        timestep=np.array([10.0], np.float32),
        encoder_hidden_states=np.zeros((3, 77, 32), np.float32),
    )["latent"]
    assert latent.shape == (3, 4, 8, 12)
    images = sd_torch_networks["vae_decoder"](latent=np.zeros((2, 4, 8, 12), np.float32))["images"]
    assert images.shape == (2, 3, 16, 24)


@pytest.mark.parametrize("network", ["text_encoder", "unet", "vae_decoder"])
def test_onnx_matches_torch(
    network: str, onnx_repository: dict[str, Path], torch_modules: dict[str, Any], sd_checkpoint: Path
) -> None:
    path = onnx_repository[network]
    assert path.name == "model.onnx"
    assert path.parent.name == "1"
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # weights embedded
    dims = nw.ModelDims.from_checkpoint(sd_checkpoint)
    differences = nw.check_onnx_parity(
        network, torch_modules[network], path, dims, cases=((1, (16, 16)), (3, (24, 16))), atol=1e-4
    )
    assert max(differences.values()) < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spec = nw.network_specs(dims)[network]
    assert [i.name for i in session.get_inputs()] == spec.input_names
    assert [o.name for o in session.get_outputs()] == spec.output_names
    expected_types = {"INT32": "tensor(int32)", "FP32": "tensor(float)"}
    assert [i.type for i in session.get_inputs()] == [expected_types[t.datatype] for t in spec.inputs]
    for tensor, onnx_input in zip(spec.inputs, session.get_inputs(), strict=True):
        dynamic = {index for index, size in enumerate(onnx_input.shape) if not isinstance(size, int)}
        assert dynamic == {index for index, _ in tensor.dynamic_axes}


def test_parity_check_fails_loudly(
    onnx_repository: dict[str, Path], torch_modules: dict[str, Any], sd_checkpoint: Path
) -> None:
    dims = nw.ModelDims.from_checkpoint(sd_checkpoint)
    perturbed = copy.deepcopy(torch_modules["vae_decoder"])
    with torch.no_grad():
        perturbed.vae.decoder.conv_in.weight.add_(0.5)
    with pytest.raises(AssertionError, match="vae_decoder: ONNX Runtime differs from torch by"):
        nw.check_onnx_parity(
            "vae_decoder", perturbed, onnx_repository["vae_decoder"], dims, cases=((1, (16, 16)),)
        )


def test_pipeline_on_onnx_runtime_matches_torch(
    onnx_repository: dict[str, Path], sd_checkpoint: Path, sd_pipeline: Any
) -> None:
    specs = nw.network_specs(nw.ModelDims.from_checkpoint(sd_checkpoint))
    sessions = {name: nw.OnnxRuntimeNetwork(path, specs[name]) for name, path in onnx_repository.items()}
    onnx_pipeline = sd.TextToImagePipeline.from_checkpoint(sd_checkpoint, **sessions)
    requests = [
        sd.GenerationRequest("a photo of a cat", steps=3, seed=1, height=16, width=16, scheduler="ddim"),
        sd.GenerationRequest(
            "a red car", steps=3, seed=2, height=16, width=16, scheduler="ddim", guidance_scale=1.0
        ),
    ]
    expected = np.stack(sd_pipeline.generate(requests, output_type="float"))
    actual = np.stack(onnx_pipeline.generate(requests, output_type="float"))
    assert np.abs(actual - expected).max() < 1e-4
    as_uint8 = np.stack(onnx_pipeline.generate(requests))
    assert np.abs(as_uint8 / 255.0 - sd.to_uint8(expected) / 255.0).mean() <= 1e-3


@pytest.mark.slow
def test_dynamo_export_of_the_text_encoder(
    torch_modules: dict[str, Any], sd_checkpoint: Path, tmp_path: Path
) -> None:
    dims = nw.ModelDims.from_checkpoint(sd_checkpoint)
    path = nw.export_onnx(
        "text_encoder", torch_modules["text_encoder"], tmp_path / "model.onnx", dims, dynamo=True
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("input_ids", ["batch", 77], "tensor(int32)")
    ]
    differences = nw.check_onnx_parity("text_encoder", torch_modules["text_encoder"], path, dims)
    assert max(differences.values()) < 1e-4
