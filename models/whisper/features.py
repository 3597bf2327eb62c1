"""Whisper audio front end: validation, resampling to 16 kHz and log-mel features.

Everything here works with numpy alone. torch (``torch.stft``) is used for the spectrogram when importable,
and torchaudio's ``functional.resample`` is used when it imports and runs; otherwise a numpy windowed-sinc
resampler with the same design (Hann-windowed sinc, 6 zero crossings, roll-off 0.99) does the work.

The features equal ``transformers.WhisperFeatureExtractor`` (n_fft 400, hop 160, 30 s window, slaney mel
filters, log10, dynamic range 8, ``(x + 4) / 4``) to well under 1e-4.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000 samples in the 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 feature frames
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
MAX_POLYPHASE_TABLE = 1 << 22  # kernel entries; larger rate pairs are resampled per output sample

Backend = Literal["auto", "numpy", "torch"]


class AudioError(ValueError):
    """Audio that cannot be transcribed; the message names the input and the problem."""


# ----------------------------------------------------------------------------------------------- validation


def validate_sample_rate(sample_rate: object, name: str = "SAMPLE_RATE") -> int:
    """Return ``sample_rate`` as an int in Hz, or raise :class:`AudioError` saying what is wrong with it."""
    value = np.asarray(sample_rate)
    if value.size != 1:
        raise AudioError(f"{name} must be a single number of Hz, got {value.size} values")
    scalar = value.reshape(()).item()
    if isinstance(scalar, bool) or not isinstance(scalar, int | float):
        raise AudioError(f"{name} must be a number of Hz, got {type(scalar).__name__} {scalar!r}")
    if not math.isfinite(scalar) or scalar != int(scalar):
        raise AudioError(f"{name} must be a whole number of Hz, got {scalar!r}")
    rate = int(scalar)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name} must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got {rate}")
    return rate


def validate_waveform(
    waveform: object,
    sample_rate: int = SAMPLE_RATE,
    *,
    name: str = "WAV",
    max_seconds: float = CHUNK_SECONDS,
) -> np.ndarray:
    """Check one mono clip and return it as a 1-D float32 array.

    Raises :class:`AudioError` for a non-array, a non-float32 dtype, a rank other than 1, an empty clip,
    NaN or infinite samples, or a clip longer than ``max_seconds`` (longer audio is refused, not chunked).
    """
    if not isinstance(waveform, np.ndarray):
        raise AudioError(f"{name} must be a numpy array of float32 samples, got {type(waveform).__name__}")
    if waveform.dtype != np.float32:
        raise AudioError(f"{name} must have dtype float32 (samples in [-1, 1]), got {waveform.dtype}")
    if waveform.ndim != 1:
        raise AudioError(
            f"{name} must be a 1-D mono waveform, got rank {waveform.ndim} with shape {tuple(waveform.shape)}"
        )
    if waveform.size == 0:
        raise AudioError(f"{name} is empty: it has no samples")
    finite = np.isfinite(waveform)
    if not finite.all():
        n_nan = int(np.isnan(waveform).sum())
        n_inf = int(waveform.size - finite.sum()) - n_nan
        raise AudioError(
            f"{name} contains non-finite samples ({n_nan} NaN, {n_inf} infinite of {waveform.size})"
        )
    seconds = waveform.size / sample_rate
    if waveform.size > math.floor(max_seconds * sample_rate):
        raise AudioError(
            f"{name} is too long: {seconds:.2f} s at {sample_rate} Hz, the limit is {max_seconds:g} s "
            "(split longer audio into clips of at most 30 s)"
        )
    return waveform


# ----------------------------------------------------------------------------------------------- resampling


def resampled_length(n_samples: int, orig_sr: int, new_sr: int = SAMPLE_RATE) -> int:
    """Number of samples a clip of ``n_samples`` at ``orig_sr`` has after resampling to ``new_sr``."""
    return math.ceil(n_samples * new_sr / orig_sr)


def sinc_resample_kernel(
    orig_sr: int, new_sr: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> tuple[np.ndarray, int, int, int]:
    """Polyphase Hann-windowed sinc kernel for ``orig_sr -> new_sr``.

    Returns ``(kernel [new, taps], width, orig, new)`` with the rates divided by their gcd; output sample ``j``
    of input block ``b`` is ``kernel[j] @ padded[b * orig : b * orig + taps]``, the input padded by ``width``.
    """
    gcd = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // gcd, new_sr // gcd
    cutoff = min(orig, new) * rolloff  # in units of the reduced rates
    width = math.ceil(lowpass_filter_width * orig / cutoff)
    taps = np.arange(-width, width + orig, dtype=np.float64) / orig
    # Time (in input samples / orig) between each output phase and each tap, scaled to the cutoff.
    phase_offsets = -np.arange(new, dtype=np.float64)[:, None] / new
    t = (phase_offsets + taps[None, :]) * cutoff
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    kernel = sinc * window * (cutoff / orig)
    return kernel, width, orig, new


def _resample_polyphase(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    kernel, width, orig, _ = sinc_resample_kernel(orig_sr, new_sr)
    padded = np.pad(audio.astype(np.float64), [(0, 0)] * (audio.ndim - 1) + [(width, width + orig)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1], axis=-1)[..., ::orig, :]
    blocks = windows @ kernel.T  # [..., n_blocks, new]
    return blocks.reshape(*audio.shape[:-1], -1)


def _resample_direct(
    audio: np.ndarray,
    orig_sr: int,
    new_sr: int,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
    chunk: int = 32768,
) -> np.ndarray:
    """The same windowed-sinc filter evaluated per output sample (for rate pairs with a huge polyphase table)."""
    n_in = audio.shape[-1]
    n_out = resampled_length(n_in, orig_sr, new_sr)
    ratio = min(1.0, new_sr / orig_sr) * rolloff  # cutoff in cycles per input sample, times 2
    half_width = math.ceil(lowpass_filter_width / ratio)
    padded = np.pad(audio.astype(np.float64), [(0, 0)] * (audio.ndim - 1) + [(half_width, half_width + 1)])
    out = np.empty((*audio.shape[:-1], n_out), dtype=np.float64)
    offsets = np.arange(-half_width, half_width + 1)
    for start in range(0, n_out, chunk):
        index = np.arange(start, min(start + chunk, n_out))
        centre = index * orig_sr / new_sr  # output times in input samples
        first = np.floor(centre).astype(np.int64)
        taps = first[:, None] + offsets[None, :]  # input sample indices around each output time
        t = np.clip((taps - centre[:, None]) * ratio, -lowpass_filter_width, lowpass_filter_width)
        window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
        t = t * math.pi
        weights = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t)) * window * ratio
        out[..., index] = np.einsum("...ot,ot->...o", padded[..., taps + half_width], weights)
    return out


def _polyphase_table_size(orig_sr: int, new_sr: int) -> int:
    gcd = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // gcd, new_sr // gcd
    width = math.ceil(6 * orig / (min(orig, new) * 0.99))
    return new * (2 * width + orig)


def _resample_numpy(audio: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    n_out = resampled_length(audio.shape[-1], orig_sr, new_sr)
    if _polyphase_table_size(orig_sr, new_sr) <= MAX_POLYPHASE_TABLE:
        out = _resample_polyphase(audio, orig_sr, new_sr)
    else:
        out = _resample_direct(audio, orig_sr, new_sr)
    return out[..., :n_out].astype(np.float32)


@functools.lru_cache(maxsize=1)
def torchaudio_resample() -> Callable[..., object] | None:
    """``torchaudio.functional.resample`` if torchaudio imports and runs here, else ``None``."""
    try:
        import torch
        import torchaudio.functional as taf

        taf.resample(torch.zeros(32), 2, 1)
    except Exception:
        return None
    return taf.resample


def resample(
    audio: np.ndarray, orig_sr: int, new_sr: int = SAMPLE_RATE, *, use_torchaudio: bool = True
) -> np.ndarray:
    """Resample float audio along its last axis from ``orig_sr`` to ``new_sr`` Hz (band-limited, float32).

    The output has ``ceil(n * new_sr / orig_sr)`` samples. torchaudio is used when ``use_torchaudio`` and it
    works here; the numpy fallback implements the same windowed-sinc filter.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == new_sr:
        return audio
    small_table = _polyphase_table_size(orig_sr, new_sr) <= MAX_POLYPHASE_TABLE
    ta_resample = torchaudio_resample() if use_torchaudio and small_table else None
    if ta_resample is not None:
        import torch

        result = ta_resample(torch.from_numpy(np.ascontiguousarray(audio)), orig_sr, new_sr)
        return result.numpy().astype(np.float32)  # type: ignore[attr-defined]
    return _resample_numpy(audio, orig_sr, new_sr)


# ----------------------------------------------------------------------------------------------- mel features


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    linear = freq / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(freq >= 1000.0, log_part, linear)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    linear = mels * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (mels - 15.0))
    return np.where(mels >= 15.0, log_part, linear)


@functools.lru_cache(maxsize=8)
def mel_filter_bank(
    n_mels: int,
    n_fft: int = N_FFT,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = 0.0,
    f_max: float = 8000.0,
) -> np.ndarray:
    """Slaney-normalised triangular mel filters on the slaney mel scale, shape ``[n_fft // 2 + 1, n_mels]``."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    spacing = np.diff(edges)
    offsets = edges[None, :] - fft_freqs[:, None]
    rising = -offsets[:, :-2] / spacing[:-1]
    falling = offsets[:, 2:] / spacing[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= 2.0 / (edges[2 : n_mels + 2] - edges[:n_mels])
    filters.setflags(write=False)
    return filters


def pad_or_trim(audio: np.ndarray, length: int = N_SAMPLES) -> np.ndarray:
    """Zero-pad or cut the last axis of ``audio`` to exactly ``length`` samples."""
    n = audio.shape[-1]
    if n >= length:
        return audio[..., :length]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - n)])


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _mel_power_numpy(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """[B, N] audio -> [B, n_mels, frames] mel power (centered STFT, reflect padding, last frame dropped)."""
    half = N_FFT // 2
    padded = np.pad(audio.astype(np.float64), [(0, 0), (half, half)], mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=-1)[:, ::HOP_LENGTH][:, :-1]
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    spectrum = np.fft.rfft(frames * window, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    return np.swapaxes(power @ filters, 1, 2)


def _mel_power_torch(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        window = torch.hann_window(N_FFT)
        stft = torch.stft(wav, N_FFT, HOP_LENGTH, window=window, center=True, return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        mel = torch.from_numpy(filters.astype(np.float32)).T @ power
    return mel.numpy()


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80, backend: Backend = "auto") -> np.ndarray:
    """Whisper log-mel features of 16 kHz audio ``[B, N]`` (or ``[N]``) -> float32 ``[B, n_mels, N // 160]``.

    Pass audio already padded to 30 s (:func:`pad_or_trim`) to get the model's ``[B, n_mels, 3000]``. The
    dynamic range (max - 8) is taken per clip.
    """
    audio = np.asarray(audio)
    squeeze = audio.ndim == 1
    if squeeze:
        audio = audio[None]
    if audio.ndim != 2:
        raise AudioError(f"audio must be [N] or [B, N], got shape {tuple(audio.shape)}")
    if audio.shape[-1] <= N_FFT // 2:
        raise AudioError(f"audio needs more than {N_FFT // 2} samples, got {audio.shape[-1]}")
    filters = mel_filter_bank(n_mels)
    use_torch = backend == "torch" or (backend == "auto" and _torch_available())
    mel = _mel_power_torch(audio, filters) if use_torch else _mel_power_numpy(audio, filters)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max(axis=(1, 2), keepdims=True) - 8.0)
    features = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return features[0] if squeeze else features


def batch_log_mel(clips: Sequence[np.ndarray], n_mels: int = 80, backend: Backend = "auto") -> np.ndarray:
    """Features for 16 kHz clips of different lengths (each at most 30 s): float32 ``[B, n_mels, 3000]``."""
    if len(clips) == 0:
        return np.zeros((0, n_mels, N_FRAMES), dtype=np.float32)
    padded = np.stack([pad_or_trim(np.asarray(clip, dtype=np.float32)) for clip in clips])
    return log_mel_spectrogram(padded, n_mels, backend)


def prepare_clip(waveform: object, sample_rate: object = None, *, name: str = "WAV") -> np.ndarray:
    """Validate one request's audio (and optional sample rate) and return it as 16 kHz float32 ``[N]``.

    ``sample_rate=None`` means the audio is already 16 kHz. Raises :class:`AudioError` naming the problem.
    """
    rate = SAMPLE_RATE if sample_rate is None else validate_sample_rate(sample_rate)
    clip = validate_waveform(waveform, rate, name=name)
    return resample(clip, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else clip
