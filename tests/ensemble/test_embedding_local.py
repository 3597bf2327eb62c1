"""The embedding ensemble in ``LocalTriton``: the built repository served in-process.

Concurrent single-sentence requests must match sentence-transformers within 1e-5, and the
in-process dynamic batcher must have grouped them (``LocalTriton.batch_sizes``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from embedding_support import PROJECT, SENTENCES, assert_matches_reference, embed_concurrently, text_tensor

from pbkit.build import build
from pbkit.testing.client import InferError

pytestmark = pytest.mark.slow

STEP_MODELS = ("embedding_tokenizer", "embedding_encoder", "embedding_pooling")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pbkit.testing import LocalTriton

    repository = tmp_path_factory.mktemp("embedding_local_repo")
    build(PROJECT, repository)
    with LocalTriton(repository) as triton:
        not_ready = {s.name: s.reason[:300] for s in triton.model_states() if not s.ready}
        assert not not_ready, not_ready
        yield triton


def test_concurrent_requests_match_sentence_transformers_and_are_batched(
    local: Any, reference: np.ndarray
) -> None:
    before = {model: len(local.batch_sizes(model)) for model in STEP_MODELS}
    start = threading.Barrier(len(SENTENCES))

    def infer(sentence: str) -> np.ndarray:
        start.wait()
        return local.infer("embedding", {"TEXT": text_tensor(sentence)})["EMBEDDING"]

    got = embed_concurrently(infer, SENTENCES, clients=len(SENTENCES))
    assert_matches_reference(got, reference)
    for model in STEP_MODELS:
        executions = local.batch_sizes(model)[before[model] :]
        assert sum(executions) == len(SENTENCES), (model, executions)
        assert len(executions) < len(SENTENCES) and max(executions) > 1, (model, executions)
    print(
        f"\nencoder executions (requests each): {local.batch_sizes('embedding_encoder')[before['embedding_encoder'] :]}"
    )


def test_infer_many_gives_the_same_embeddings_in_one_batch_per_step(
    local: Any, reference: np.ndarray
) -> None:
    before = {model: len(local.batch_sizes(model)) for model in STEP_MODELS}
    results = local.infer_many("embedding", [{"TEXT": text_tensor(s)} for s in SENTENCES[:16]])
    got = np.concatenate([r["EMBEDDING"] for r in results])
    np.testing.assert_allclose(got, reference[:16], atol=1e-5, rtol=0)
    for model in STEP_MODELS:  # sent together, the requests reach each step's batcher together
        assert local.batch_sizes(model)[before[model] :] == [16], model


def test_text_that_is_not_utf8_is_an_invalid_argument(local: Any) -> None:
    with pytest.raises(InferError) as error:
        local.infer("embedding", {"TEXT": np.array([[b"\xff\xfe not utf-8"]], dtype=object)})
    assert error.value.code == "INVALID_ARG"
    assert "UTF-8" in error.value.message


def test_served_configs_match_the_declarations(local: Any) -> None:
    config = local.config("embedding")
    assert config["platform"] == "ensemble"
    assert [step["model_name"] for step in config["ensemble_scheduling"]["step"]] == list(STEP_MODELS)
    assert Path(local.repository, "embedding_encoder", "1", "network.py").is_file()
