"""The built repository in-process with ``pbkit.testing.LocalTriton``: the Python variants, and the ONNX
variants exported by ``export_variants.py`` (run by onnxruntime stubs, as LocalTriton has no ONNX backend)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from whisper_modules import decoding, export_variants, features, networks
from whisper_support import build_repository

from pbkit.config import read_config
from pbkit.config.check import check_repository
from pbkit.testing.client import InferError
from pbkit.testing.local import LocalTriton


def generate_ids(model: Any, clips: list[np.ndarray], checkpoint: Path) -> list[list[int]]:
    eos = decoding.GenerationSettings.from_pretrained(checkpoint).eos_token_id
    with torch.no_grad():
        reference = model.generate(torch.from_numpy(features.batch_log_mel(clips, 80)))
    return [[token for token in row if token != eos] for row in reference.tolist()]


def tokens(result: dict[str, np.ndarray]) -> list[int]:
    return [token for token in result["TOKENS"][0].tolist() if token != -1]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, english_checkpoint: Path) -> Iterator[LocalTriton]:
    repository = build_repository(tmp_path_factory.mktemp("whisper_local") / "repository", english_checkpoint)
    assert check_repository(repository) == []
    wav = [t for t in read_config(repository / "whisper" / "config.pbtxt").input if t.name == "WAV"]
    assert wav[0].allow_ragged_batch, "WAV must be ragged so Triton batches clips of different lengths"
    with LocalTriton(repository) as triton:
        yield triton


def test_one_batch_for_clips_of_different_lengths(
    local: LocalTriton, clips: list[np.ndarray], english_model: Any, english_checkpoint: Path
) -> None:
    chosen = clips[:5]
    requests: list[dict[str, np.ndarray]] = [{"WAV": clip[None]} for clip in chosen]
    requests.insert(2, {"WAV": np.zeros((1, 0), np.float32)})
    results = local.infer_many("whisper", requests, return_exceptions=True)
    assert local.batch_sizes("whisper")[-1] == len(requests)
    failed = results.pop(2)
    assert isinstance(failed, InferError) and failed.code == "INVALID_ARG"
    assert failed.message == "WAV is empty: it has no samples"
    assert [tokens(result) for result in results] == generate_ids(english_model, chosen, english_checkpoint)
    pieces = [r["TEXT"][0, 0] for r in local.stream("whisper_stream", {"WAV": chosen[3][None]})]
    assert b"".join(pieces) == results[3]["TEXT"][0, 0]


@pytest.mark.slow
def test_onnx_variants_from_the_export_step(
    tmp_path: Path, clips: list[np.ndarray], english_model: Any, english_checkpoint: Path
) -> None:
    onnx_dir = tmp_path / "onnx"
    encoder_file, decoder_file = export_variants.export(english_checkpoint, onnx_dir)
    assert [encoder_file.name, decoder_file.name] == ["whisper_encoder.onnx", "whisper_decoder.onnx"]
    repository = build_repository(tmp_path / "repository", english_checkpoint, onnx_dir, variant="onnx")
    assert check_repository(repository) == []
    for name, exported in (("whisper_encoder", encoder_file), ("whisper_decoder", decoder_file)):
        config = read_config(repository / name / "config.pbtxt")
        assert (config.platform, config.backend, config.max_batch_size) == ("onnxruntime_onnx", "", 16)
        assert sorted(p.name for p in (repository / name / "1").iterdir()) == ["model.onnx"]
        assert (repository / name / "1" / "model.onnx").read_bytes() == exported.read_bytes()
    encode, decode_step = networks.onnx_callables(
        repository / "whisper_encoder" / "1" / "model.onnx",
        repository / "whisper_decoder" / "1" / "model.onnx",
        threads=1,
    )
    stubs = {
        "whisper_encoder": lambda inputs: encode(**inputs),
        "whisper_decoder": lambda inputs: decode_step(**inputs),
    }
    chosen = clips[:4]
    with LocalTriton(repository, stubs=stubs) as triton:
        results = triton.infer_many("whisper", [{"WAV": clip[None]} for clip in chosen])
    assert [tokens(result) for result in results] == generate_ids(english_model, chosen, english_checkpoint)


def test_trtexec_commands_cover_the_checkpoint_shapes(english_checkpoint: Path, tmp_path: Path) -> None:
    encoder, decoder = export_variants.trtexec_commands(
        english_checkpoint, tmp_path / "onnx", tmp_path / "plans"
    )
    assert encoder == (
        f"trtexec --onnx={tmp_path}/onnx/whisper_encoder.onnx --saveEngine={tmp_path}/plans/whisper_encoder.plan "
        "--minShapes=input_features:1x80x3000 --optShapes=input_features:4x80x3000 "
        "--maxShapes=input_features:16x80x3000 --fp16"
    )
    assert decoder == (
        f"trtexec --onnx={tmp_path}/onnx/whisper_decoder.onnx --saveEngine={tmp_path}/plans/whisper_decoder.plan "
        "--minShapes=input_ids:1x1,past_key_values:1x2x2x2x0x32,cross_key_values:1x2x2x2x1500x32 "
        "--optShapes=input_ids:4x1,past_key_values:4x2x2x2x32x32,cross_key_values:4x2x2x2x1500x32 "
        "--maxShapes=input_ids:16x4,past_key_values:16x2x2x2x447x32,cross_key_values:16x2x2x2x1500x32 --fp16"
    )
