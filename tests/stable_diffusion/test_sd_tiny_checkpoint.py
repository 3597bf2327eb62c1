"""The tiny random checkpoint: diffusers layout, determinism, loadable by diffusers and by networks.py."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sd_modules import MODEL_DIR, networks, tiny_checkpoint

WEIGHT_FILES = (
    "text_encoder/model.safetensors",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
)
TOKENIZER_FILES = ("tokenizer/tokenizer.json", "tokenizer/vocab.json", "tokenizer/merges.txt")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout(sd_checkpoint: Path) -> None:
    assert tiny_checkpoint.is_complete(sd_checkpoint)
    index = json.loads((sd_checkpoint / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    scheduler = json.loads((sd_checkpoint / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler"
    assert scheduler["clip_sample"] is False  # kept for DDIM built from this config, as in SD 1.x


def test_dims(sd_checkpoint: Path) -> None:
    dims = networks.ModelDims.from_checkpoint(sd_checkpoint)
    assert dims == networks.ModelDims(
        text_hidden_size=32,
        latent_channels=4,
        vae_scale_factor=2,
        unet_downsample_factor=2,
        vae_scaling_factor=0.18215,
        default_sample_size=32,
        max_length=77,
    )


def test_existing_checkpoint_is_left_alone(sd_checkpoint: Path) -> None:
    before = {name: (sd_checkpoint / name).stat().st_mtime_ns for name in WEIGHT_FILES}
    tiny_checkpoint.write_tiny_checkpoint(sd_checkpoint)
    assert {name: (sd_checkpoint / name).stat().st_mtime_ns for name in WEIGHT_FILES} == before


@pytest.mark.slow
def test_cli_is_deterministic(sd_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    script = MODEL_DIR / "tiny_checkpoint.py"
    result = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    for name in (*WEIGHT_FILES, *TOKENIZER_FILES):
        assert _digest(out / name) == _digest(sd_checkpoint / name), name


def test_diffusers_loads_the_checkpoint(diffusers_pipeline: object) -> None:
    assert diffusers_pipeline.vae_scale_factor == 2  # type: ignore[attr-defined]
    assert diffusers_pipeline.tokenizer("a photo of a cat").input_ids[:2] == [49406, 320]  # type: ignore[attr-defined]
