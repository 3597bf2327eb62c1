"""Bad-input fuzzing: hypothesis requests to every example model and a pbkit test model, on the real
tritonserver and on LocalTriton.

Each request is either answered correctly (checked against an independent oracle) or refused with
INVALID_ARG naming one of its problems. Both targets get the same corpus: the property is
derandomized, so its examples depend only on the strategy, and each run checks the digest of the
requests it sent against the corpus drawn without sending anything. After the corpus the server is
still up and healthy, and a good request still gets the right answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import fuzz_scale
from hypothesis import HealthCheck, Phase, given, note, settings
from reliability_contracts import EmbeddingReferences, all_contracts
from reliability_fuzz import (
    FuzzCase,
    FuzzStatistics,
    ModelContract,
    ask,
    check_answer,
    expectation,
    fuzz_cases,
)

#: Requests per model and target in CI (times PBKIT_FUZZ_SCALE).
EXAMPLES = {
    "fuzz_target": 80,
    "embedding": 30,
    "embedding_tokenizer": 30,
    "embedding_encoder": 30,
    "embedding_pooling": 40,
}
TARGETS = [pytest.param("server", marks=pytest.mark.server), "local"]


def examples(model: str) -> int:
    return max(1, round(EXAMPLES[model] * fuzz_scale()))


def case_digest(case: FuzzCase) -> bytes:
    """A digest of everything that is sent: model, protocol, inputs, parameters, requested outputs."""
    digest = hashlib.sha256(repr((case.model, case.protocol, case.parameters, case.outputs)).encode())
    for name in sorted(case.inputs):
        array = case.inputs[name]
        digest.update(repr((name, array.dtype.str, array.shape)).encode())
        if array.dtype == object:
            for item in array.reshape(-1):
                digest.update(len(item).to_bytes(8, "little") + item)
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


def run_corpus(contract: ModelContract, handle: Callable[[FuzzCase], None]) -> bytes:
    """Run ``handle`` on the model's corpus: half well-formed requests (whose values may still be bad),
    half with one or two structural faults. Returns the digest of the whole corpus, in order."""
    corpus = hashlib.sha256()
    for faults in ((0,), (1, 2)):

        @settings(
            max_examples=max(1, examples(contract.name) // 2),
            deadline=None,
            derandomize=True,
            database=None,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        )
        @given(case=fuzz_cases(contract, faults))
        def property_holds(case: FuzzCase) -> None:
            corpus.update(case_digest(case))
            handle(case)

        property_holds()
    return corpus.digest()


@pytest.fixture(scope="module")
def contracts(embedding_references: EmbeddingReferences) -> dict[str, ModelContract]:
    return all_contracts(embedding_references)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> tuple[str, Any]:
    name = request.param
    return name, request.getfixturevalue("triton" if name == "server" else "local_triton")


@pytest.mark.parametrize("model", sorted(EXAMPLES))
def test_fuzzed_requests_get_the_right_answer_or_invalid_arg(
    model: str,
    target: tuple[str, Any],
    contracts: dict[str, ModelContract],
    fuzz_statistics: FuzzStatistics,
) -> None:
    name, client = target
    contract = contracts[model]

    def send(case: FuzzCase) -> None:
        note(case.describe())
        expected = expectation(contract, case)
        view = client.client(case.protocol) if name == "server" else client
        check_answer(contract, case, expected, ask(view, case))
        if name == "server":
            assert client.is_running(), "tritonserver exited"
        fuzz_statistics.record(case, expected, [name])

    sent = run_corpus(contract, send)
    assert sent == run_corpus(contract, lambda case: None), "the corpus sent is not the model's corpus"

    # Still serving: healthy, and a good request gets the right answer.
    if name == "server":
        health = client.health()
        assert health.healthy, health.describe()
    assert client.is_model_ready(model)
    assert contract.good_request is not None
    good = contract.good_request()
    expected = contract.oracle(good, {})
    answer = client.infer(model, good)
    for output, want in expected.items():
        np.testing.assert_allclose(answer[output], want, rtol=contract.rtol, atol=contract.atol)
