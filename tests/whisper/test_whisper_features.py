"""Whisper front end: mel filters, log-mel features against transformers, resampling and audio validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import WhisperFeatureExtractor
from transformers.audio_utils import mel_filter_bank
from whisper_modules import features

AudioError = features.AudioError


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filter_bank_matches_transformers(n_mels: int) -> None:
    reference = mel_filter_bank(201, n_mels, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    ours = features.mel_filter_bank(n_mels)
    assert ours.shape == (201, n_mels)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("n_mels", [80, 128])
def test_features_match_whisper_feature_extractor(clips: list[np.ndarray], n_mels: int, backend: str) -> None:
    batch = [*clips[:4], np.zeros(16000, np.float32), (0.2 * np.ones(31 * 16000)).astype(np.float32)]
    batch[-1][::7] = -0.3  # longer than 30 s: both cut it to the window
    reference = WhisperFeatureExtractor(feature_size=n_mels)(
        batch, sampling_rate=16000, return_tensors="np"
    ).input_features
    ours = features.batch_log_mel(batch, n_mels, backend=backend)  # type: ignore[arg-type]
    assert ours.shape == (len(batch), n_mels, 3000)
    assert ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-4


def test_single_clip_features_equal_batch_row(clips: list[np.ndarray]) -> None:
    one = features.log_mel_spectrogram(features.pad_or_trim(clips[1]))
    batch = features.batch_log_mel(clips[:3])
    assert one.shape == (80, 3000)
    np.testing.assert_array_equal(one, batch[1])


def test_empty_batch_has_the_feature_shape() -> None:
    assert features.batch_log_mel([], 128).shape == (0, 128, 3000)


def test_pad_or_trim() -> None:
    assert features.pad_or_trim(np.ones(10, np.float32), 16).tolist() == [1.0] * 10 + [0.0] * 6
    assert features.pad_or_trim(np.arange(20.0), 4).tolist() == [0.0, 1.0, 2.0, 3.0]


# ----------------------------------------------------------------------------------------------- resampling


def tones(rate: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * np.sin(2 * np.pi * 1500.0 * t)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 16001, 96000])
def test_resampling_reproduces_band_limited_tones(rate: int) -> None:
    out = features.resample(tones(rate).astype(np.float32), rate, 16000)
    assert out.dtype == np.float32
    assert len(out) == math.ceil(len(tones(rate)) * 16000 / rate)
    expected = tones(16000)[: len(out)]
    inner = slice(200, len(out) - 200)  # away from the zero-padded edges
    assert np.abs(out - expected)[inner].max() < 2e-3


def test_resampling_removes_frequencies_above_the_new_nyquist() -> None:
    rate = 22050
    t = np.arange(rate) / rate
    out = features.resample(np.sin(2 * np.pi * 10000.0 * t).astype(np.float32), rate, 16000)
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 0.01  # a 10 kHz tone cannot exist at 16 kHz


def test_resampling_to_the_same_rate_is_identity(clips: list[np.ndarray]) -> None:
    np.testing.assert_array_equal(features.resample(clips[0], 16000, 16000), clips[0])


@pytest.mark.parametrize("rate", [22050, 44100, 8000])
def test_polyphase_and_per_sample_filters_agree(rate: int) -> None:
    audio = np.random.default_rng(0).standard_normal((2, 5000))
    polyphase = features._resample_polyphase(audio, rate, 16000)
    direct = features._resample_direct(audio, rate, 16000)
    n = direct.shape[-1]
    np.testing.assert_allclose(polyphase[..., :n], direct, atol=1e-9)


def test_batched_resampling_equals_row_by_row() -> None:
    audio = np.random.default_rng(1).standard_normal((3, 7000)).astype(np.float32)
    batched = features.resample(audio, 44100, 16000, use_torchaudio=False)
    rows = [features.resample(row, 44100, 16000, use_torchaudio=False) for row in audio]
    np.testing.assert_allclose(batched, np.stack(rows), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3000), rate=st.sampled_from([8000, 11025, 22050, 32000, 44100, 48000, 12345]))
def test_resampled_length_property(n: int, rate: int) -> None:
    out = features.resample(np.ones(n, np.float32), rate, 16000, use_torchaudio=False)
    assert len(out) == features.resampled_length(n, rate) == math.ceil(n * 16000 / rate)


# ----------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("waveform", "message"),
    [
        (np.zeros(0, np.float32), "WAV is empty"),
        (np.array([0.1, np.nan, 0.2], np.float32), "1 NaN, 0 infinite of 3"),
        (np.array([np.inf, -np.inf, 0.0], np.float32), "0 NaN, 2 infinite of 3"),
        (np.zeros((2, 100), np.float32), "1-D mono waveform, got rank 2 with shape (2, 100)"),
        (np.float32(0.5), "numpy array"),
        (np.zeros((), np.float32), "rank 0"),
        (np.zeros(100, np.int16), "dtype float32 (samples in [-1, 1]), got int16"),
        (np.zeros(100, np.float64), "got float64"),
        ([0.0, 0.1], "numpy array of float32 samples, got list"),
        (np.zeros(30 * 16000 + 1, np.float32), "too long: 30.00 s at 16000 Hz, the limit is 30 s"),
    ],
)
def test_bad_audio_is_refused_with_a_clear_message(waveform: object, message: str) -> None:
    with pytest.raises(AudioError) as info:
        features.prepare_clip(waveform)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (0, "between 1000 and 384000 Hz, got 0"),
        (-16000, "got -16000"),
        (10_000_000, "got 10000000"),
        (16000.5, "whole number of Hz, got 16000.5"),
        (float("nan"), "whole number of Hz, got nan"),
        ("16000", "must be a number of Hz, got str"),
        (np.array([16000, 8000]), "single number of Hz, got 2 values"),
        (True, "got bool"),
    ],
)
def test_bad_sample_rate_is_refused(rate: object, message: str) -> None:
    with pytest.raises(AudioError) as info:
        features.prepare_clip(np.zeros(100, np.float32), rate)
    assert "SAMPLE_RATE" in str(info.value)
    assert message in str(info.value)


def test_thirty_seconds_at_any_rate_is_accepted_and_resampled() -> None:
    rate = 44100
    clip = features.prepare_clip(np.zeros(30 * rate, np.float32), np.array([rate], np.int32))
    assert clip.shape == (features.N_SAMPLES,)
    with pytest.raises(AudioError, match="too long"):
        features.prepare_clip(np.zeros(30 * rate + 1, np.float32), rate)


def test_valid_16khz_audio_is_returned_unchanged(clips: list[np.ndarray]) -> None:
    assert features.prepare_clip(clips[0]) is clips[0]
    assert features.prepare_clip(clips[0], 16000.0) is clips[0]
