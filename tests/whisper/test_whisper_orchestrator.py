"""The pbkit models without a server: the batching loop over the orchestrators and the Python variants.

The orchestrators run through pbkit's own ``BatchingLoop`` (per-request checks, NaN padding of ``WAV``,
one ``predict`` per batch, scatter), with the two Python variants standing in for the BLS calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from whisper_modules import (
    decoding,
    features,
    networks,
    transcriber,
    whisper_namespace,
    whisper_orchestrator,
    whisper_submodels,
)

import pbkit
from pbkit.runtime import SetupContext
from pbkit.runtime.batching import BatchingLoop, Request, RequestFailed

orchestrator, submodels = whisper_orchestrator, whisper_submodels


def setup_context(name: str, checkpoint: Path, **parameters: str) -> SetupContext:
    return SetupContext(
        model_name=name,
        model_version=1,
        instance_name=f"{name}_0",
        instance_kind="CPU",
        device_id=0,
        model_dir=Path("."),
        config={},
        parameters={"checkpoint": str(checkpoint), "torch_threads": "1", **parameters},
    )


def like_bls(variant: Any) -> Callable[..., dict[str, np.ndarray]]:
    """A Python variant called like a BLS handle: numpy outputs, or torch tensors with ``as_torch=True``."""

    def call(*, as_torch: bool | None = None, **inputs: np.ndarray) -> dict[str, Any]:
        outputs = variant.predict(**inputs).items()
        return {name: value if as_torch else np.asarray(value) for name, value in outputs}

    return call


@pytest.fixture(scope="module")
def variants(english_checkpoint: Path) -> tuple[Any, Any]:
    encoder, decoder = submodels.TorchWhisperEncoder(), submodels.TorchWhisperDecoder()
    with whisper_namespace():
        encoder.setup(setup_context("whisper_encoder", english_checkpoint))
        decoder.setup(setup_context("whisper_decoder", english_checkpoint))
    return encoder, decoder


def orchestrator_loop(model_class: type, checkpoint: Path, variants: tuple[Any, Any]) -> BatchingLoop:
    model = model_class()
    model.setup(setup_context(pbkit.spec_of(model_class).name, checkpoint))
    model.whisper_encoder, model.whisper_decoder = (like_bls(v) for v in variants)
    return BatchingLoop(pbkit.spec_of(model_class), model.predict, model.validate)


@pytest.fixture(scope="module")
def whisper(english_checkpoint: Path, variants: tuple[Any, Any]) -> BatchingLoop:
    return orchestrator_loop(orchestrator.Whisper, english_checkpoint, variants)


@pytest.fixture(scope="module")
def whisper_stream(english_checkpoint: Path, variants: tuple[Any, Any]) -> BatchingLoop:
    return orchestrator_loop(orchestrator.WhisperStream, english_checkpoint, variants)


def generate_ids(model: Any, clips: list[np.ndarray], eos: int) -> list[list[int]]:
    with torch.no_grad():
        out = model.generate(torch.from_numpy(features.batch_log_mel(clips, 80)))
    return [[token for token in row if token != eos] for row in out.tolist()]


def tokens_of(result: dict[str, np.ndarray]) -> list[list[int]]:
    return [[int(t) for t in row if t != orchestrator.TOKEN_PAD] for row in result["TOKENS"]]


def test_wav_lengths_are_where_the_nan_padding_starts() -> None:
    wav = np.array([[1, 2, 3], [1, np.nan, np.nan], [0, 0, np.nan]], np.float32)
    assert orchestrator.wav_lengths(wav).tolist() == [3, 1, 2]


def test_batch_of_different_lengths_equals_generate(
    whisper: BatchingLoop, clips: list[np.ndarray], english_model: Any, english_checkpoint: Path
) -> None:
    eos = decoding.GenerationSettings.from_pretrained(english_checkpoint).eos_token_id
    resampled = features.resample(clips[2], 16000, 22050)
    requests = [Request({"WAV": clip[None]}) for clip in clips[:2]]
    requests.append(Request({"WAV": resampled[None], "SAMPLE_RATE": np.array([[22050]], np.int32)}))
    requests.append(Request({"WAV": np.stack([clips[3], clips[3][::-1].copy()])}))  # two rows, one request
    requests.append(Request({"WAV": clips[4][None], "LANGUAGE": np.array([[b"en"]], dtype=object)}))
    results = whisper.run(requests)
    assert not [r for r in results if isinstance(r, RequestFailed)], results
    expected_clips = [
        clips[0],
        clips[1],
        features.prepare_clip(resampled, 22050),
        clips[3],
        clips[3][::-1].copy(),
        clips[4],
    ]
    expected = generate_ids(english_model, expected_clips, eos)
    got = [row for result in results for row in tokens_of(result)]  # type: ignore[arg-type]
    assert got == expected
    assert len({len(row) for row in got}) > 2  # the rows stopped at different steps
    texts = [row[0].decode() for result in results for row in result["TEXT"]]  # type: ignore[index]
    assert texts == [transcriber.Transcriber(english_checkpoint).text(row) for row in expected]


def test_tokens_are_padded_to_the_longest_row_of_the_batch(
    whisper: BatchingLoop, clips: list[np.ndarray]
) -> None:
    results = whisper.run([Request({"WAV": clip[None]}) for clip in clips[:3]])
    widths = {result["TOKENS"].shape[1] for result in results}  # type: ignore[index]
    assert len(widths) == 1
    assert widths == {max(len(tokens_of(result)[0]) for result in results)}  # type: ignore[arg-type]


def test_each_bad_request_gets_its_own_invalid_arg(whisper: BatchingLoop, clips: list[np.ndarray]) -> None:
    nan = np.zeros((1, 100), np.float32)
    nan[0, 7] = np.nan
    cases = [
        ({"WAV": np.zeros((1, 0), np.float32)}, "WAV is empty: it has no samples"),
        ({"WAV": nan}, "WAV contains non-finite samples (1 NaN, 0 infinite of 100)"),
        (
            {"WAV": np.full((1, 100), np.inf, np.float32)},
            "WAV contains non-finite samples (0 NaN, 100 infinite",
        ),
        (
            {"WAV": np.zeros((1, 480001), np.float32)},
            "WAV is too long: 30.00 s at 16000 Hz, the limit is 30 s",
        ),
        (
            {"WAV": np.zeros((1, 8000 * 31), np.float32), "SAMPLE_RATE": np.array([[8000]], np.int32)},
            "WAV is too long: 31.00 s at 8000 Hz",
        ),
        (
            {"WAV": np.zeros((1, 10), np.float32), "SAMPLE_RATE": np.array([[0]], np.int32)},
            "SAMPLE_RATE must be between 1000 and 384000 Hz, got 0",
        ),
        (
            {"WAV": np.zeros((1, 10), np.float32), "LANGUAGE": np.array([[b"de"]], dtype=object)},
            "this model is English-only; LANGUAGE 'de' is not supported",
        ),
        (
            {"WAV": np.zeros((1, 10), np.float32), "TASK": np.array([[b"summarize"]], dtype=object)},
            "TASK 'summarize' is not supported; use 'transcribe' or 'translate'",
        ),
        ({"WAV": np.concatenate([np.zeros((1, 100), np.float32), nan])}, "row 1: WAV contains non-finite"),
        ({"WAV": np.zeros((1, 10), np.float64)}, "input 'WAV' of model 'whisper': expected data type FP32"),
        ({"WAV": np.zeros(10, np.float32)}, "input 'WAV' of model 'whisper': expected shape [-1, -1]"),
    ]
    good = Request({"WAV": clips[0][None]})
    results = whisper.run([good, *(Request(inputs) for inputs, _ in cases)])
    assert isinstance(results[0], dict) and results[0]["TEXT"].shape == (1, 1)
    for (_, message), result in zip(cases, results[1:], strict=True):
        assert isinstance(result, RequestFailed) and result.code == "INVALID_ARG", result
        assert message in result.message, (message, result.message)


def test_stream_pieces_join_to_the_text(
    whisper: BatchingLoop, whisper_stream: BatchingLoop, clips: list[np.ndarray]
) -> None:
    texts = [r["TEXT"][0, 0] for r in whisper.run([Request({"WAV": clip[None]}) for clip in clips[:4]])]  # type: ignore[index]
    requests = [Request({"WAV": clip[None]}) for clip in clips[:4]]
    assert all(whisper_stream.check_request(r) is None for r in requests)
    joined = [b""] * len(requests)
    responses = 0
    for step in whisper_stream.stream_group(requests):
        responses += 1
        for index, result in enumerate(step):
            assert isinstance(result, dict) and result["TEXT"].shape == (1, 1)
            joined[index] += result["TEXT"][0, 0]
    assert joined == texts
    assert responses >= max(len(text.split()) for text in texts)


def test_encoder_variant_matches_the_network_and_checks_mel_bins(
    variants: tuple[Any, Any], english_model: Any, clips: list[np.ndarray]
) -> None:
    encoder, _ = variants
    input_features = features.batch_log_mel(clips[:2], 80)
    expected = networks.torch_callables(english_model)[0](input_features=input_features)["cross_key_values"]
    got = encoder.predict(input_features=input_features)["cross_key_values"]
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)
    with pytest.raises(pbkit.InvalidArgument, match=r"takes 80 mel bins, got shape \[1, 128, 3000\]"):
        encoder.validate(input_features=np.zeros((1, 128, 3000), np.float32))


def test_decoder_variant_checks_ids_cache_shapes_and_positions(variants: tuple[Any, Any]) -> None:
    _, decoder = variants
    dims = decoder.dims
    kv = (1, dims.layers, 2, dims.heads)
    ids = np.array([[50257, 50362]], np.int64)
    past = np.zeros((*kv, 0, dims.head_dim), np.float32)
    cross = np.zeros((*kv, 1500, dims.head_dim), np.float32)
    decoder.validate(input_ids=ids, past_key_values=past, cross_key_values=cross)
    outputs = decoder.predict(input_ids=ids, past_key_values=past, cross_key_values=cross)
    assert tuple(outputs["logits"].shape) == (1, dims.vocab_size)
    assert tuple(outputs["present_key_values"].shape) == (*kv, 2, dims.head_dim)
    bad = [
        (
            {"input_ids": np.array([[dims.vocab_size]])},
            f"input_ids: values must be in 0..{dims.vocab_size - 1}",
        ),
        (
            {"past_key_values": np.zeros((1, 3, 2, dims.heads, 0, dims.head_dim), np.float32)},
            "past_key_values",
        ),
        ({"cross_key_values": np.zeros((*kv, 1500, dims.head_dim + 1), np.float32)}, "cross_key_values"),
        (
            {"past_key_values": np.zeros((*kv, dims.max_positions - 1, dims.head_dim), np.float32)},
            f"reach position {dims.max_positions + 1}",
        ),
    ]
    for change, message in bad:
        inputs = {"input_ids": ids, "past_key_values": past, "cross_key_values": cross, **change}
        with pytest.raises(pbkit.InvalidArgument, match=message.replace("[", r"\[")):
            decoder.validate(**inputs)


def test_checkpoint_parameter_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the 'checkpoint' parameter is empty"):
        submodels.checkpoint_dir(setup_context("whisper", Path(" ")))
    with pytest.raises(FileNotFoundError, match=r"is not a Whisper checkpoint.*PBKIT_WHISPER_CHECKPOINT"):
        submodels.checkpoint_dir(setup_context("whisper", tmp_path))


def test_default_checkpoint_is_fixed_at_import(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = Path(submodels.__file__).resolve().parents[2]
    monkeypatch.delenv(submodels.CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(submodels.CHECKPOINTS_ENV, raising=False)
    assert submodels.default_checkpoint() == str(root / "checkpoints" / "whisper-tiny.en")
    monkeypatch.setenv(submodels.CHECKPOINTS_ENV, str(tmp_path))
    assert submodels.default_checkpoint() == str(tmp_path / "whisper-tiny.en")
    monkeypatch.setenv(submodels.CHECKPOINT_ENV, str(tmp_path / "mine"))
    assert submodels.default_checkpoint() == str(tmp_path / "mine")


def test_max_new_tokens_parameter_limits_the_tokens(
    english_checkpoint: Path, variants: tuple[Any, Any], clips: list[np.ndarray]
) -> None:
    def tokens(**parameters: str) -> list[list[int]]:
        model = orchestrator.Whisper()
        model.setup(setup_context("whisper", english_checkpoint, **parameters))
        model.whisper_encoder, model.whisper_decoder = (like_bls(v) for v in variants)
        outputs = model.predict(
            WAV=np.stack([clips[index][:100000] for index in (2, 5, 8)]),
            SAMPLE_RATE=np.full((3, 1), 16000, np.int32),
            LANGUAGE=np.full((3, 1), b"", dtype=object),
            TASK=np.full((3, 1), b"", dtype=object),
        )
        return tokens_of(outputs)

    unlimited, limited = tokens(), tokens(max_new_tokens="3")
    assert max(map(len, unlimited)) > 3
    assert limited == [row[:3] for row in unlimited]
