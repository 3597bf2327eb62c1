"""Request-level glue for a Whisper orchestrator: check one request, then transcribe or stream a batch.

``Transcriber.prepare`` validates one request's ``WAV`` / ``SAMPLE_RATE`` / ``LANGUAGE`` / ``TASK`` and raises a
``ValueError`` subclass naming the problem (so one bad request can be answered alone). ``transcribe`` and
``stream`` then run a whole batch of prepared requests through ``encode`` / ``decode_step`` callables (BLS
handles or the local torch / onnxruntime ones). Texts are stripped of surrounding whitespace; streamed pieces
join to exactly the same text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import decoding
import features
import numpy as np


def feature_size(checkpoint: str | os.PathLike[str]) -> int:
    """Number of mel bins a checkpoint expects (``preprocessor_config.json``, else ``config.json``)."""
    root = Path(checkpoint)
    preprocessor = root / "preprocessor_config.json"
    if preprocessor.is_file():
        return int(json.loads(preprocessor.read_text(encoding="utf-8"))["feature_size"])
    return int(json.loads((root / "config.json").read_text(encoding="utf-8")).get("num_mel_bins", 80))


def optional_text(value: object, name: str) -> str | None:
    """A BYTES/str request value (scalar or one-element array) as ``str``; ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"{name} must hold one string, got {value.size} values")
        value = value.reshape(()).item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{name} is not valid UTF-8: {error}") from None
    if isinstance(value, str):
        return value
    raise ValueError(f"{name} must be a string, got {type(value).__name__}")


@dataclass(frozen=True)
class PreparedRequest:
    """A checked request: 16 kHz mono audio and its prompt choice."""

    clip: np.ndarray
    prompt: decoding.RowPrompt


class _StrippedStream:
    """Streams pieces of one row so that they join to ``full_text.strip()``."""

    def __init__(self) -> None:
        self.started = False
        self.pending = ""  # trailing whitespace held until more text follows

    def feed(self, piece: str) -> str:
        if not self.started:
            piece = piece.lstrip()
            if not piece:
                return ""
            self.started = True
        body = piece.rstrip()
        if not body:
            self.pending += piece
            return ""
        out = self.pending + body
        self.pending = piece[len(body) :]
        return out


class Transcriber:
    """Whisper transcription over numpy ``encode`` / ``decode_step`` callables, for one checkpoint."""

    def __init__(self, checkpoint: str | os.PathLike[str], max_new_tokens: int | None = None) -> None:
        self.settings = decoding.GenerationSettings.from_pretrained(checkpoint)
        self.tokenizer = decoding.load_tokenizer(checkpoint)
        self.n_mels = feature_size(checkpoint)
        self.max_new_tokens = max_new_tokens

    def prepare(
        self, wav: object, sample_rate: object = None, language: object = None, task: object = None
    ) -> PreparedRequest:
        """Check one request and resample its audio to 16 kHz; raises ``ValueError`` naming the problem."""
        clip = features.prepare_clip(wav, sample_rate)
        prompt = decoding.row_prompt(
            self.settings, optional_text(language, "LANGUAGE"), optional_text(task, "TASK")
        )
        return PreparedRequest(clip, prompt)

    def check(
        self, wav: object, sample_rate: object = None, language: object = None, task: object = None
    ) -> None:
        """The checks of :meth:`prepare` without resampling: cheap enough to run on every request first."""
        rate = features.SAMPLE_RATE if sample_rate is None else features.validate_sample_rate(sample_rate)
        features.validate_waveform(wav, rate)
        decoding.row_prompt(self.settings, optional_text(language, "LANGUAGE"), optional_text(task, "TASK"))

    def _steps(
        self, requests: Sequence[PreparedRequest], encode: decoding.NumpyFn, decode_step: decoding.NumpyFn
    ) -> Iterator[decoding.StepResult]:
        input_features = features.batch_log_mel([r.clip for r in requests], self.n_mels)
        prompts = [r.prompt for r in requests]
        return decoding.iter_greedy(
            encode, decode_step, input_features, self.settings, prompts, self.max_new_tokens
        )

    def generate(
        self, requests: Sequence[PreparedRequest], encode: decoding.NumpyFn, decode_step: decoding.NumpyFn
    ) -> list[list[int]]:
        """Generated token ids of each request (prompt and end-of-text excluded), decoding the batch together."""
        ids: list[list[int]] = [[] for _ in requests]
        for step in self._steps(requests, encode, decode_step):
            for row, token in zip(step.rows.tolist(), step.tokens.tolist(), strict=True):
                if token != self.settings.eos_token_id:
                    ids[row].append(token)
        return ids

    def text(self, ids: Sequence[int]) -> str:
        """The text of generated ids, special tokens removed and surrounding whitespace stripped."""
        return decoding.decode_text(self.tokenizer, ids).strip()

    def transcribe(
        self, requests: Sequence[PreparedRequest], encode: decoding.NumpyFn, decode_step: decoding.NumpyFn
    ) -> list[str]:
        """Text of each request, decoding the whole batch together."""
        return [self.text(row) for row in self.generate(requests, encode, decode_step)]

    def stream_steps(
        self, requests: Sequence[PreparedRequest], encode: decoding.NumpyFn, decode_step: decoding.NumpyFn
    ) -> Iterator[list[tuple[int, str, bool]]]:
        """One list per decoding step: ``(request index, text piece, done)`` for each request still running
        at that step (pieces may be empty). A request's pieces join to its :meth:`transcribe` text."""
        rows = [_StrippedStream() for _ in requests]
        pieces = decoding.TextPieces(self.tokenizer, self.settings.eos_token_id)
        for step in self._steps(requests, encode, decode_step):
            yield [(row, rows[row].feed(piece), done) for row, piece, done in pieces.step(step)]

    def stream(
        self, requests: Sequence[PreparedRequest], encode: decoding.NumpyFn, decode_step: decoding.NumpyFn
    ) -> Iterator[tuple[int, str, bool]]:
        """``(request index, text piece, done)`` as tokens are decoded; only non-empty pieces and the final
        ``done`` item (whose piece may be empty) are yielded. A request's pieces join to its
        :meth:`transcribe` text."""
        for items in self.stream_steps(requests, encode, decode_step):
            for row, text, done in items:
                if text or done:
                    yield row, text, done
