"""The embedding ensemble on the real local tritonserver.

One server for the module: ``pbkit build models/ensemble_embedding`` (default variants), then
concurrent single-sentence requests whose embeddings must match sentence-transformers within
1e-5, with Triton's own statistics showing that the dynamic batcher grouped them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from embedding_support import (
    PROJECT,
    SENTENCES,
    assert_matches_reference,
    embed_concurrently,
    text_tensor,
)

from pbkit.build import build
from pbkit.testing.client import InferError

pytestmark = [pytest.mark.server, pytest.mark.slow]

STEP_MODELS = ("embedding_tokenizer", "embedding_encoder", "embedding_pooling")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("embedding_repo")
    report = build(PROJECT, out)
    kinds = {model.name: model.kind for model in report.models}
    assert kinds == {
        "embedding": "ensemble",
        "embedding_tokenizer": "python",
        "embedding_encoder": "python variant",
        "embedding_pooling": "python",
    }
    return out


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[Any]:
    from pbkit.testing.server import TritonServer

    with TritonServer(repository, startup_timeout=240) as running:
        states = {state.name: state for state in running.model_states()}
        not_ready = {name: s.reason[:300] for name, s in states.items() if s.state != "READY"}
        assert not not_ready, not_ready
        yield running


def statistics(server: Any, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/stats", timeout=30) as response:
        return json.load(response)["model_stats"][0]


def batch_counts(stats: dict[str, Any]) -> dict[int, int]:
    """Executions per batch size, from Triton's ``batch_stats``."""
    return {
        int(entry["batch_size"]): int(entry["compute_infer"]["count"])
        for entry in stats.get("batch_stats", [])
    }


def executions_since(before: dict[str, Any], after: dict[str, Any]) -> dict[int, int]:
    old, new = batch_counts(before), batch_counts(after)
    return {size: count - old.get(size, 0) for size, count in new.items() if count > old.get(size, 0)}


def test_concurrent_requests_match_sentence_transformers_and_are_batched(
    server: Any, reference: np.ndarray
) -> None:
    before = {model: statistics(server, model) for model in STEP_MODELS}
    start = threading.Barrier(len(SENTENCES))

    def infer(sentence: str) -> np.ndarray:
        start.wait()
        return server.infer("embedding", {"TEXT": text_tensor(sentence)})["EMBEDDING"]

    began = time.perf_counter()
    got = embed_concurrently(infer, SENTENCES, clients=len(SENTENCES))
    elapsed = time.perf_counter() - began
    assert_matches_reference(got, reference)
    np.testing.assert_array_equal(got[SENTENCES.index("A man is eating food.")], got[-3])

    after = {model: statistics(server, model) for model in STEP_MODELS}
    for model in STEP_MODELS:
        executed = executions_since(before[model], after[model])
        inferences = int(after[model]["inference_count"]) - int(before[model]["inference_count"])
        assert inferences == len(SENTENCES), (model, inferences)
        assert sum(size * count for size, count in executed.items()) == len(SENTENCES), (model, executed)
        # Grouping happened: fewer executions than requests, at least one with several requests.
        assert sum(executed.values()) < len(SENTENCES), (model, executed)
        assert max(executed) > 1, (model, executed)
    print(
        f"\n{len(SENTENCES)} concurrent requests in {elapsed:.2f} s; encoder batches "
        f"{executions_since(before['embedding_encoder'], after['embedding_encoder'])}"
    )


def test_one_request_with_many_rows(server: Any, reference: np.ndarray) -> None:
    text = np.array([[s.encode("utf-8")] for s in SENTENCES], dtype=object)
    got = server.infer("embedding", {"TEXT": text})["EMBEDDING"]
    assert_matches_reference(got, reference)


def test_http_gives_the_same_embeddings(server: Any, reference: np.ndarray) -> None:
    http = server.client("http")
    index = SENTENCES.index("素早い茶色の狐がのろまな犬を飛び越える。")
    got = http.infer("embedding", {"TEXT": text_tensor(SENTENCES[index])})["EMBEDDING"]
    np.testing.assert_allclose(got[0], reference[index], atol=1e-5, rtol=0)


def test_text_that_is_not_utf8_is_an_invalid_argument(server: Any, reference: np.ndarray) -> None:
    with pytest.raises(InferError) as error:
        server.infer("embedding", {"TEXT": np.array([[b"\xff\xfe not utf-8"]], dtype=object)})
    assert error.value.code == "INVALID_ARG"
    assert "UTF-8" in error.value.message
    got = server.infer("embedding", {"TEXT": text_tensor(SENTENCES[4])})["EMBEDDING"]
    np.testing.assert_allclose(got[0], reference[4], atol=1e-5, rtol=0)


def test_query_script_prints_the_cosine_similarity(server: Any, reference: np.ndarray) -> None:
    first, second = (
        SENTENCES.index("A man is eating food."),
        SENTENCES.index("A man is eating a piece of bread."),
    )
    expected = float(np.dot(reference[first], reference[second]))
    for url in (server.http_url, f"grpc://{server.grpc_url}"):
        result = subprocess.run(
            [sys.executable, str(PROJECT / "query.py"), url, SENTENCES[first], SENTENCES[second]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert abs(float(result.stdout.strip()) - expected) < 1e-4, (result.stdout, expected)
    unrelated = SENTENCES.index("The girl is carrying a baby.")
    assert expected > 0.7 > float(np.dot(reference[first], reference[unrelated]))
