"""The real tiny.en weights: CTranslate2 reader, conversion, and transcription of espeak-ng speech."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from whisper_modules import convert_ct2, decoding, features, networks
from whisper_support import espeak_wav

pytestmark = pytest.mark.slow

DIGITS = [str(n) for n in range(1, 11)]


@pytest.fixture(scope="module")
def tiny_en(tiny_en_checkpoint: Path) -> dict[str, Any]:
    model = networks.load_whisper(tiny_en_checkpoint)
    return {
        "model": model,
        "callables": networks.torch_callables(model),
        "settings": decoding.GenerationSettings.from_pretrained(tiny_en_checkpoint),
        "tokenizer": decoding.load_tokenizer(tiny_en_checkpoint),
    }


def read_clip(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(str(path), dtype="float32")
    assert rate == 22050
    return features.prepare_clip(audio, rate)


def test_ct2_reader_splits_and_ties() -> None:
    spec, variables = convert_ct2.read_ct2_model(convert_ct2.package_model_dir() / "model.bin")
    assert spec == "WhisperSpec"
    assert variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert variables["decoder/embeddings/weight"].dtype == np.float16
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]  # alias
    assert variables["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 384, 384)
    state = convert_ct2.ct2_to_hf_state_dict(variables)
    assert "model.encoder.layers.3.self_attn.k_proj.bias" not in state
    assert state["model.decoder.layers.0.encoder_attn.v_proj.weight"].shape == (384, 384)
    fused = variables["decoder/layer_0/attention/linear_1/weight"].astype(np.float32)
    np.testing.assert_array_equal(state["model.decoder.layers.0.encoder_attn.k_proj.weight"], fused[:384])
    np.testing.assert_array_equal(state["model.decoder.layers.0.encoder_attn.v_proj.weight"], fused[384:])
    assert not variables["encoder/layer_0/self_attention/linear_0/bias"][384:768].any()  # the dropped k bias


def test_converted_checkpoint_describes_tiny_en(tiny_en_checkpoint: Path, tiny_en: dict[str, Any]) -> None:
    config = json.loads((tiny_en_checkpoint / "config.json").read_text())
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"]) == (384, 4, 4)
    assert (config["encoder_attention_heads"], config["vocab_size"], config["num_mel_bins"]) == (6, 51864, 80)
    preprocessor = json.loads((tiny_en_checkpoint / "preprocessor_config.json").read_text())
    assert preprocessor["feature_size"] == 80
    model = tiny_en["model"]
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    settings = tiny_en["settings"]
    assert not settings.is_multilingual
    assert settings.prompt(None, None) == [50257, 50362]


def test_conversion_cli_is_idempotent(tiny_en_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in tiny_en_checkpoint.iterdir()}
    assert convert_ct2.main([str(tiny_en_checkpoint)]) == 0
    assert "already converted" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in tiny_en_checkpoint.iterdir()} == before


def test_conversion_refuses_to_replace_other_directories(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a checkpoint directory"):
        convert_ct2.convert_ct2_whisper(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_espeak_numbers_transcribe_to_digits(numbers_wav: Path, tiny_en: dict[str, Any]) -> None:
    input_features = features.batch_log_mel([read_clip(numbers_wav)])
    ids = decoding.greedy_decode(*tiny_en["callables"], input_features, tiny_en["settings"])
    text = decoding.decode_text(tiny_en["tokenizer"], ids[0])
    assert re.findall(r"\d+", text) == DIGITS, text
    with torch.no_grad():
        reference = tiny_en["model"].generate(torch.from_numpy(input_features))
    assert ids == [[t for t in reference[0].tolist() if t != tiny_en["settings"].eos_token_id]]


def test_batch_of_speech_and_streaming(numbers_wav: Path, tmp_path: Path, tiny_en: dict[str, Any]) -> None:
    hello = read_clip(espeak_wav("Hello world. How are you today?", tmp_path / "hello.wav"))
    numbers = read_clip(numbers_wav)
    input_features = features.batch_log_mel([hello, numbers, numbers[: len(numbers) // 2]])
    settings, tokenizer = tiny_en["settings"], tiny_en["tokenizer"]
    ids = decoding.greedy_decode(*tiny_en["callables"], input_features, settings)
    texts = [decoding.decode_text(tokenizer, row) for row in ids]
    assert "How are you today?" in texts[0]
    assert re.findall(r"\d+", texts[1]) == DIGITS
    assert len(ids[2]) < len(ids[1])
    steps = decoding.iter_greedy(*tiny_en["callables"], input_features, settings)
    streamed = ["", "", ""]
    pieces = 0
    for row, piece, _ in decoding.iter_text_pieces(steps, tokenizer, settings.eos_token_id):
        streamed[row] += piece
        pieces += bool(piece)
    assert streamed == texts
    assert pieces > 10
