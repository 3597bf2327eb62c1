"""Dynamic batching on the real local Triton with a tiny random checkpoint: exact parity with ``generate``.

Clips of different lengths are sent at once, so Triton's dynamic batcher puts them into shared ``execute``
calls (counted on ``/metrics``); each request's ``TOKENS`` must still equal what
``WhisperForConditionalGeneration.generate`` (greedy) gives for that clip, and the streamed pieces of
concurrent ``whisper_stream`` requests must join to their texts.
"""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from whisper_modules import decoding, features
from whisper_support import build_repository

from pbkit.testing.server import TritonServer

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, english_checkpoint: Path) -> Iterator[TritonServer]:
    repository = build_repository(
        tmp_path_factory.mktemp("whisper_random") / "repository", english_checkpoint
    )
    with TritonServer(repository) as running:
        yield running


def executions(server: TritonServer, model: str) -> tuple[int, int]:
    """``(execute calls, successful requests)`` of ``model`` so far, from Triton's metrics."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()

    def counter(name: str) -> int:
        match = re.search(rf'^{name}{{model="{model}",version="1"}} (\d+)', text, re.MULTILINE)
        return int(match.group(1)) if match else 0

    return counter("nv_inference_exec_count"), counter("nv_inference_request_success")


def concurrently(
    server: TritonServer, call: Callable[[np.ndarray], Any], clips: list[np.ndarray]
) -> list[Any]:
    """``call`` for every clip, each from its own thread; the threads set up their clients first and then
    send together, so the requests reach the dynamic batcher within its queue delay."""
    start = threading.Barrier(len(clips))

    def send(clip: np.ndarray) -> Any:
        assert server.is_model_ready("whisper")  # this thread's connection is made before the barrier
        start.wait(timeout=60)
        return call(clip)

    with ThreadPoolExecutor(len(clips)) as pool:
        return list(pool.map(send, clips))


def test_concurrent_clips_share_batches_and_equal_generate(
    server: TritonServer, clips: list[np.ndarray], english_model: Any, english_checkpoint: Path
) -> None:
    server.infer("whisper", {"WAV": clips[0][None]})  # the first call's set-up costs stay out of the batches
    chosen = clips[:6]
    assert len({len(clip) for clip in chosen}) == len(chosen)
    before = executions(server, "whisper")
    results = concurrently(server, lambda clip: server.infer("whisper", {"WAV": clip[None]}), chosen)
    after = executions(server, "whisper")
    calls, requests = after[0] - before[0], after[1] - before[1]
    assert requests == len(chosen)
    assert calls < requests, f"{requests} requests took {calls} execute calls: none shared a batch"

    eos = decoding.GenerationSettings.from_pretrained(english_checkpoint).eos_token_id
    with torch.no_grad():
        reference = english_model.generate(torch.from_numpy(features.batch_log_mel(chosen, 80)))
    expected = [[token for token in row if token != eos] for row in reference.tolist()]
    got = [[token for token in result["TOKENS"][0].tolist() if token != -1] for result in results]
    assert got == expected
    assert len({len(row) for row in expected}) > 2  # rows left the batch at different steps
    tokenizer = decoding.load_tokenizer(english_checkpoint)
    texts = [result["TEXT"][0, 0].decode() for result in results]
    assert texts == [decoding.decode_text(tokenizer, row).strip() for row in expected]


def test_concurrent_streams_join_to_their_texts(server: TritonServer, clips: list[np.ndarray]) -> None:
    chosen = [clips[index] for index in (1, 4, 8)]
    texts = [server.infer("whisper", {"WAV": clip[None]}, outputs=["TEXT"])["TEXT"][0, 0] for clip in chosen]
    before = executions(server, "whisper_stream")
    streamed = concurrently(
        server,
        lambda clip: [r["TEXT"][0, 0] for r in server.stream("whisper_stream", {"WAV": clip[None]})],
        chosen,
    )
    after = executions(server, "whisper_stream")
    assert after[1] - before[1] == len(chosen)
    assert after[0] - before[0] < len(chosen)
    assert [b"".join(pieces) for pieces in streamed] == texts
