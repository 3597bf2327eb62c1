"""The whisper models on the real local Triton with the real tiny.en weights: speech, streaming, bad audio.

The repository is built the way a user builds it (``pbkit build models/whisper``), so the ``checkpoint``
parameter takes its build-time default, ``checkpoints/whisper-tiny.en`` (``scripts/prepare_checkpoints.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from whisper_modules import whisper_submodels
from whisper_support import build_repository

from pbkit.testing.client import InferError
from pbkit.testing.server import TritonServer

pytestmark = [pytest.mark.server, pytest.mark.slow]

DIGITS = [str(n) for n in range(1, 11)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv(whisper_submodels.CHECKPOINT_ENV, raising=False)
        checkpoint = Path(whisper_submodels.default_checkpoint())  # what build_repository builds with
    if not (checkpoint / "model.safetensors").is_file():
        pytest.fail(f"{checkpoint} is missing: run `python scripts/prepare_checkpoints.py` first")
    repository = build_repository(tmp_path_factory.mktemp("whisper_tiny_en") / "repository")
    with TritonServer(repository) as running:
        yield running


@pytest.fixture(scope="module")
def numbers(numbers_wav: Path) -> dict[str, np.ndarray]:
    """espeak-ng's numbers at its own rate (22050 Hz), as one request."""
    audio, rate = soundfile.read(str(numbers_wav), dtype="float32")
    return {"WAV": audio[None], "SAMPLE_RATE": np.array([[rate]], np.int32)}


def test_speech_transcribes_to_the_numbers(server: TritonServer, numbers: dict[str, np.ndarray]) -> None:
    outputs = server.infer("whisper", numbers)
    text = outputs["TEXT"][0, 0].decode()
    assert re.findall(r"\d+", text) == DIGITS, text
    assert outputs["TOKENS"].shape[0] == 1 and (outputs["TOKENS"] >= 0).all()
    english = server.client("http").infer(
        "whisper", {**numbers, "LANGUAGE": np.array([[b"en"]], dtype=object)}
    )
    assert english["TEXT"][0, 0].decode() == text


def test_stream_pieces_join_to_the_text(server: TritonServer, numbers: dict[str, np.ndarray]) -> None:
    text = server.infer("whisper", numbers, outputs=["TEXT"])["TEXT"][0, 0]
    pieces = [response["TEXT"][0, 0] for response in server.stream("whisper_stream", numbers)]
    assert b"".join(pieces) == text
    assert len(pieces) >= 10 and all(pieces)


def bad(length: int = 1600, dtype: type = np.float32) -> np.ndarray:
    return np.zeros((1, length), dtype)


def with_nan() -> np.ndarray:
    wav = bad()
    wav[0, 100] = np.nan
    return wav


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"WAV": bad(0)}, "WAV is empty: it has no samples"),
        ({"WAV": with_nan()}, "WAV contains non-finite samples (1 NaN, 0 infinite of 1600)"),
        (
            {"WAV": bad(16000 * 31)},
            "WAV is too long: 31.00 s at 16000 Hz, the limit is 30 s (split longer audio into clips of at most 30 s)",
        ),
        (
            {"WAV": bad(24000 * 31), "SAMPLE_RATE": np.array([[24000]], np.int32)},
            "WAV is too long: 31.00 s at 24000 Hz",
        ),
        (
            {"WAV": bad(), "SAMPLE_RATE": np.array([[500]], np.int32)},
            "SAMPLE_RATE must be between 1000 and 384000 Hz, got 500",
        ),
        (
            {"WAV": bad(), "LANGUAGE": np.array([[b"fr"]], dtype=object)},
            "this model is English-only; LANGUAGE 'fr' is not supported",
        ),
        (
            {"WAV": bad(), "TASK": np.array([[b"translate"]], dtype=object)},
            "this model is English-only; TASK 'translate' is not supported",
        ),
        ({"WAV": np.concatenate([bad(), with_nan()])}, "row 1: WAV contains non-finite samples"),
        (
            {"WAV": bad(dtype=np.float64)},
            "inference input 'WAV' data-type is 'FP64', but model 'whisper' expects 'FP32'",
        ),
        ({"WAV": np.zeros((1, 2, 1600), np.float32)}, "unexpected shape for input 'WAV' for model 'whisper'"),
        # Without its batch axis, a clip reads as that many rows of no samples.
        ({"WAV": np.zeros(1600, np.float32)}, "inference request batch-size must be <= 16 for 'whisper'"),
        ({"WAV": np.zeros(8, np.float32)}, "unexpected shape for input 'WAV' for model 'whisper'"),
    ],
    ids=[
        "empty",
        "nan",
        "too-long",
        "too-long-at-24k",
        "sample-rate",
        "language",
        "task",
        "bad-row",
        "dtype",
        "stereo",
        "rank-1",
        "rank-1-short",
    ],
)
def test_bad_audio_is_an_invalid_argument(
    server: TritonServer, inputs: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(InferError) as error:
        server.infer("whisper", inputs)
    assert error.value.code == "INVALID_ARG"
    assert message in error.value.message, error.value.message


def test_bad_audio_ends_the_stream_with_its_error(server: TritonServer) -> None:
    with pytest.raises(InferError, match="WAV is empty: it has no samples"):
        list(server.stream("whisper_stream", {"WAV": bad(0)}))
