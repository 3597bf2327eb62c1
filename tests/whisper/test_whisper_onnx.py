"""ONNX export of the two submodels: IO contract, onnxruntime parity with torch, same greedy tokens."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from whisper_modules import decoding, features, networks

FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64


@pytest.fixture(scope="module")
def onnx_files(multilingual_model: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Both submodels exported, then moved to Triton's ``<name>/1/model.onnx`` layout."""
    export_dir = tmp_path_factory.mktemp("export")
    encoder, decoder = networks.export_onnx(
        multilingual_model, export_dir / "encoder.onnx", export_dir / "decoder.onnx"
    )
    repo = tmp_path_factory.mktemp("repo")
    moved = []
    for name, file in (("whisper_encoder", encoder), ("whisper_decoder", decoder)):
        target = repo / name / "1" / "model.onnx"
        target.parent.mkdir(parents=True)
        shutil.move(file, target)
        moved.append(target)
    assert sorted(p.name for p in export_dir.iterdir()) == []  # no external weight files left behind
    return moved[0], moved[1]


def io_signature(values: Any) -> dict[str, tuple[int, list[str | int]]]:
    return {
        value.name: (
            value.type.tensor_type.elem_type,
            [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim],
        )
        for value in values
    }


def test_onnx_io_names_dtypes_and_dynamic_axes(
    onnx_files: tuple[Path, Path], multilingual_model: Any
) -> None:
    config = multilingual_model.config
    layers, heads = config.decoder_layers, config.decoder_attention_heads
    head_dim = config.d_model // heads
    encoder, decoder = (onnx.load(str(file)) for file in onnx_files)
    assert io_signature(encoder.graph.input) == {"input_features": (FLOAT, ["batch", 128, 3000])}
    assert io_signature(encoder.graph.output) == {
        "cross_key_values": (FLOAT, ["batch", layers, 2, heads, 1500, head_dim])
    }
    inputs = io_signature(decoder.graph.input)
    assert inputs == {
        "input_ids": (INT64, ["batch", "tokens"]),
        "past_key_values": (FLOAT, ["batch", layers, 2, heads, "past", head_dim]),
        "cross_key_values": (FLOAT, ["batch", layers, 2, heads, 1500, head_dim]),
    }
    outputs = io_signature(decoder.graph.output)
    assert outputs["logits"] == (FLOAT, ["batch", config.vocab_size])
    assert outputs["present_key_values"][0] == FLOAT
    present_dims = outputs["present_key_values"][1]
    assert [present_dims[i] for i in (0, 1, 2, 3, 5)] == ["batch", layers, 2, heads, head_dim]
    assert isinstance(present_dims[4], str)  # dynamic total length


def test_onnxruntime_matches_torch(
    onnx_files: tuple[Path, Path], multilingual_model: Any, clips: list[np.ndarray]
) -> None:
    torch_encode, torch_step = networks.torch_callables(multilingual_model)
    ort_encode, ort_step = networks.onnx_callables(*onnx_files)
    input_features = features.batch_log_mel(clips[:3], 128)
    cross = torch_encode(input_features=input_features)["cross_key_values"]
    ort_cross = ort_encode(input_features=input_features)["cross_key_values"]
    scale = np.abs(cross).max()
    assert np.abs(ort_cross - cross).max() < 1e-4 * max(1.0, scale)
    rng = np.random.default_rng(0)
    batch, layers, _, heads, _, head_dim = cross.shape
    for past_length, tokens in ((0, 4), (0, 1), (1, 3), (6, 1), (9, 2)):
        inputs = {
            "input_ids": rng.integers(0, 50000, (batch, tokens)).astype(np.int64),
            "past_key_values": rng.standard_normal((batch, layers, 2, heads, past_length, head_dim)).astype(
                np.float32
            ),
            "cross_key_values": cross,
        }
        expected, got = torch_step(**inputs), ort_step(**inputs)
        assert got["present_key_values"].shape == (batch, layers, 2, heads, past_length + tokens, head_dim)
        np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(
            got["present_key_values"], expected["present_key_values"], atol=1e-4, rtol=0
        )


def test_onnxruntime_greedy_tokens_equal_torch(
    onnx_files: tuple[Path, Path],
    multilingual_model: Any,
    multilingual_checkpoint: Path,
    clips: list[np.ndarray],
) -> None:
    settings = decoding.GenerationSettings.from_pretrained(multilingual_checkpoint)
    input_features = features.batch_log_mel(clips, 128)
    expected = decoding.greedy_decode(*networks.torch_callables(multilingual_model), input_features, settings)
    got = decoding.greedy_decode(*networks.onnx_callables(*onnx_files), input_features, settings)
    assert got == expected
