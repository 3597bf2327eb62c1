"""The Whisper orchestrators: ``whisper`` (one response per request) and ``whisper_stream`` (decoupled).

Both take the same inputs:

* ``WAV`` FP32 ``[-1]``: mono audio, samples in [-1, 1], at most 30 s (longer audio is refused, not chunked);
* ``SAMPLE_RATE`` INT32 ``[1]``, optional (16000): other rates are resampled to 16 kHz;
* ``LANGUAGE`` BYTES ``[1]``, optional: a code (``en``), name (``english``) or token (``<|en|>``); empty means
  detect (multilingual checkpoints) or English (English-only ones, which refuse other languages);
* ``TASK`` BYTES ``[1]``, optional: ``transcribe`` (the default) or ``translate`` (multilingual only).

``whisper`` returns ``TEXT`` BYTES ``[1]`` (stripped of surrounding whitespace) and ``TOKENS`` INT64 ``[-1]``:
the generated token ids (no prompt, no end-of-text), padded with ``-1`` to the longest row of the batch the
request was decoded in. ``whisper_stream`` sends ``TEXT`` pieces as tokens are decoded; a request's pieces
join to the ``TEXT`` ``whisper`` returns for it. When it decodes several requests together, each response
goes to all of them, so a request may get empty pieces while others of its batch produce text.

How a batch is decoded: the features of every row go to ``whisper_encoder`` in one BLS call, then
``whisper_decoder`` runs once per token for all rows still decoding, with the self-attention cache passed
back and forth; rows that finish leave the batch (see ``decoding.iter_greedy``). The token ids equal
``WhisperForConditionalGeneration.generate`` greedy for the same checkpoint.

Why ``WAV`` declares ``pad_value=NaN``: requests of different lengths are then gathered into one ``predict``
call, each padded with NaN up to the longest. Every request is checked alone first (``validate``), and a
request holding a NaN is refused there, so in ``predict`` a row's true length is exactly where its NaNs
begin. Grouping by shape instead would decode each distinct length separately, and real audio seldom has
equal lengths. Triton's own dynamic batcher only puts requests with different ``WAV`` lengths into one
``execute`` call when the input allows ragged batches (``allow_ragged_batch: true`` in ``config.pbtxt``);
without it, requests of equal length still share a batch, and the result of each request is the same.

Bad audio gets INVALID_ARG naming the problem: empty, NaN or infinite samples, longer than 30 s, a bad
``SAMPLE_RATE``, an unsupported ``LANGUAGE`` or ``TASK``. Triton itself refuses a wrong data type or rank
before the model runs.

Config parameters: ``checkpoint`` and ``torch_threads`` (see ``whisper_submodels``), and ``max_new_tokens``
(empty: the checkpoint's generation limit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import transcriber
import whisper_submodels as submodels

import pbkit

INPUTS = [
    pbkit.Input("WAV", "FP32", [-1], pad_value=np.nan),
    pbkit.Input("SAMPLE_RATE", "INT32", [1], default=np.array([16000], np.int32)),
    pbkit.Input("LANGUAGE", "BYTES", [1], default=np.array([b""], dtype=object)),
    pbkit.Input("TASK", "BYTES", [1], default=np.array([b""], dtype=object)),
]
#: Pads ``TOKENS`` rows shorter than the longest of their batch.
TOKEN_PAD = -1
#: Long enough for concurrent requests to meet in one batch, short next to a transcription.
QUEUE_DELAY_US = 20_000
PARAMETERS = {**submodels.PARAMETERS, "max_new_tokens": ""}


def host_outputs(handle: Callable[..., Mapping[str, Any]]) -> Callable[..., dict[str, np.ndarray]]:
    """A BLS handle as the numpy callable the decoding loop takes, wherever the submodel leaves its outputs.

    Outputs are received as torch tensors through DLPack (a GPU submodel, such as the TensorRT variant,
    answers with GPU tensors, which a numpy-only call would refuse) and copied to host numpy arrays.
    """

    def call(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        outputs = handle(as_torch=True, **inputs)
        return {
            name: value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)
            for name, value in outputs.items()
        }

    return call


def wav_lengths(wav: np.ndarray) -> np.ndarray:
    """Each row's true length in a NaN-padded ``[B, N]`` batch: the position of its first NaN, else ``N``."""
    padding = np.isnan(wav)
    return np.where(padding.any(axis=1), padding.argmax(axis=1), wav.shape[1])


class WhisperBase:
    """What both orchestrators share: set-up, per-request checks and preparing a batch."""

    whisper_encoder = submodels.encoder
    whisper_decoder = submodels.decoder

    def setup(self, ctx: pbkit.SetupContext) -> None:
        submodels.configure_torch(ctx)  # the log-mel front end uses torch.stft when torch is there
        limit = ctx.parameter("max_new_tokens", "").strip()
        self.transcriber = transcriber.Transcriber(
            submodels.checkpoint_dir(ctx), int(limit) if limit else None
        )

    def validate(
        self, WAV: np.ndarray, SAMPLE_RATE: np.ndarray, LANGUAGE: np.ndarray, TASK: np.ndarray
    ) -> None:
        """Check each row of one request; the message names the row when the request has several."""
        for row in range(len(WAV)):
            try:
                self.transcriber.check(WAV[row], SAMPLE_RATE[row], LANGUAGE[row], TASK[row])
            except ValueError as error:
                where = f"row {row}: " if len(WAV) > 1 else ""
                raise pbkit.InvalidArgument(f"{where}{error}") from None

    def submodel_calls(
        self,
    ) -> tuple[Callable[..., dict[str, np.ndarray]], Callable[..., dict[str, np.ndarray]]]:
        """``(encode, decode_step)`` over the two BLS handles, for the decoding loop."""
        return host_outputs(self.whisper_encoder), host_outputs(self.whisper_decoder)

    def prepare(
        self, WAV: np.ndarray, SAMPLE_RATE: np.ndarray, LANGUAGE: np.ndarray, TASK: np.ndarray
    ) -> list[transcriber.PreparedRequest]:
        """Each row cut to its true length, resampled to 16 kHz, with its prompt choice."""
        return [
            self.transcriber.prepare(WAV[row, :length], SAMPLE_RATE[row], LANGUAGE[row], TASK[row])
            for row, length in enumerate(wav_lengths(WAV).tolist())
        ]


@pbkit.model(
    name="whisper",
    inputs=INPUTS,
    outputs=[pbkit.Output("TEXT", "BYTES", [1]), pbkit.Output("TOKENS", "INT64", [-1])],
    max_batch_size=submodels.MAX_BATCH_SIZE,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=QUEUE_DELAY_US),
    instances=1,
    parameters=PARAMETERS,
)
class Whisper(WhisperBase):
    """Transcribes (or translates) each request's audio, decoding the whole dynamic batch together."""

    def predict(
        self, WAV: np.ndarray, SAMPLE_RATE: np.ndarray, LANGUAGE: np.ndarray, TASK: np.ndarray
    ) -> dict[str, Any]:
        requests = self.prepare(WAV, SAMPLE_RATE, LANGUAGE, TASK)
        ids = self.transcriber.generate(requests, *self.submodel_calls())
        tokens = np.full((len(ids), max(map(len, ids), default=0)), TOKEN_PAD, dtype=np.int64)
        for row, row_ids in enumerate(ids):
            tokens[row, : len(row_ids)] = row_ids
        text = np.array([[self.transcriber.text(row_ids).encode()] for row_ids in ids], dtype=object)
        return {"TEXT": text, "TOKENS": tokens}


@pbkit.model(
    name="whisper_stream",
    inputs=INPUTS,
    outputs=[pbkit.Output("TEXT", "BYTES", [1])],
    max_batch_size=submodels.MAX_BATCH_SIZE,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=QUEUE_DELAY_US),
    instances=1,
    parameters=PARAMETERS,
)
class WhisperStream(WhisperBase):
    """Streams each request's text as it is decoded (decoupled): one response per step that adds text."""

    def predict(
        self, WAV: np.ndarray, SAMPLE_RATE: np.ndarray, LANGUAGE: np.ndarray, TASK: np.ndarray
    ) -> Iterator[dict[str, Any]]:
        requests = self.prepare(WAV, SAMPLE_RATE, LANGUAGE, TASK)
        steps = self.transcriber.stream_steps(requests, *self.submodel_calls())
        for items in steps:
            pieces = np.full((len(requests), 1), b"", dtype=object)
            for row, piece, _ in items:
                pieces[row, 0] = piece.encode()
            if any(pieces[:, 0]):
                yield {"TEXT": pieces}
