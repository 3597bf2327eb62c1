"""Request-level glue: per-request checks, batch transcription and streaming over the same callables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from whisper_modules import decoding, features, networks, transcriber


@pytest.fixture(scope="module")
def english(english_checkpoint: Path, english_model: Any) -> tuple[Any, tuple[Any, Any]]:
    return transcriber.Transcriber(english_checkpoint), networks.torch_callables(english_model)


def test_prepare_checks_each_request(english: tuple[Any, Any]) -> None:
    whisper, _ = english
    ok = whisper.prepare(np.zeros(8000, np.float32), np.array([8000]), np.array([b"en"], dtype=object), b"")
    assert ok.clip.shape == (16000,) and ok.prompt == decoding.RowPrompt(None, None)
    cases = [
        ((np.zeros(0, np.float32),), "WAV is empty"),
        ((np.zeros(10, np.float32), 0), "SAMPLE_RATE must be between"),
        ((np.zeros(10, np.float32), None, b"de"), "English-only; LANGUAGE 'de'"),
        ((np.zeros(10, np.float32), None, b"\xff"), "LANGUAGE is not valid UTF-8"),
        ((np.zeros(10, np.float32), None, None, np.array([b"a", b"b"], dtype=object)), "TASK must hold one"),
        ((np.zeros(10, np.float32), None, None, 7), "TASK must be a string, got int"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError) as info:
            whisper.prepare(*args)
        assert message in str(info.value)


def test_transcribe_equals_greedy_decoding(english: tuple[Any, Any], clips: list[np.ndarray]) -> None:
    whisper, (encode, decode_step) = english
    requests = [whisper.prepare(clip) for clip in clips[:5]]
    requests.append(whisper.prepare(features.resample(clips[5], 16000, 44100), 44100))
    texts = whisper.transcribe(requests, encode, decode_step)
    input_features = features.batch_log_mel([r.clip for r in requests])
    ids = decoding.greedy_decode(encode, decode_step, input_features, whisper.settings)
    assert texts == [decoding.decode_text(whisper.tokenizer, row).strip() for row in ids]


def test_stream_joins_to_transcribe(english: tuple[Any, Any], clips: list[np.ndarray]) -> None:
    whisper, (encode, decode_step) = english
    requests = [whisper.prepare(clip) for clip in clips]
    texts = whisper.transcribe(requests, encode, decode_step)
    joined = [""] * len(requests)
    finished = [0] * len(requests)
    for row, piece, done in whisper.stream(requests, encode, decode_step):
        assert not finished[row]
        joined[row] += piece
        finished[row] += done
    assert finished == [1] * len(requests)
    assert joined == texts


@pytest.mark.slow
def test_real_speech_stream(tiny_en_checkpoint: Path, numbers_wav: Path) -> None:
    import soundfile

    whisper = transcriber.Transcriber(tiny_en_checkpoint)
    assert whisper.n_mels == 80
    callables = networks.torch_callables(tiny_en_checkpoint)
    audio, rate = soundfile.read(str(numbers_wav), dtype="float32")
    requests = [whisper.prepare(audio, rate)]
    (text,) = whisper.transcribe(requests, *callables)
    assert re.findall(r"\d+", text) == [str(n) for n in range(1, 11)] and text == text.strip()
    pieces = [piece for _, piece, _ in whisper.stream(requests, *callables)]
    assert "".join(pieces) == text and len(pieces) > 10


@given(st.lists(st.text(alphabet=" \tab\n€", max_size=4), max_size=12))
def test_stripped_stream_joins_to_stripped_text(pieces: list[str]) -> None:
    stream = transcriber._StrippedStream()
    assert "".join(stream.feed(piece) for piece in pieces) == "".join(pieces).strip()


def test_feature_size_reads_the_checkpoint(english_checkpoint: Path, multilingual_checkpoint: Path) -> None:
    assert transcriber.feature_size(english_checkpoint) == 80
    assert transcriber.feature_size(multilingual_checkpoint) == 128
