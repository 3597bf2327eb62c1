"""Bad-input fuzzing: hypothesis requests to every example model and a pbkit test model, on the real
tritonserver and on LocalTriton.

Each request is either answered correctly (checked against an independent oracle) or refused with
INVALID_ARG naming one of its problems. Both targets get the same corpus: the first target to fuzz a
model (the real server, unless it is deselected) runs the derandomized hypothesis property, which
shrinks any failure, and records the requests it drew; the other target replays exactly those. After
the corpus the server is still up and healthy, and a good request still gets the right answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis.control import currently_in_test_context
from reliability_contracts import EmbeddingReferences, TinyCheckpoints, all_contracts, fuzz_scale
from reliability_fuzz import (
    Expectation,
    FuzzCase,
    FuzzStatistics,
    ModelContract,
    ask,
    check_answer,
    expectation,
    fuzz_cases,
)

from pbkit.testing.client import InferError
from pbkit.testing.server import InferTimeout

#: Requests per model and target in CI (times PBKIT_FUZZ_SCALE).
EXAMPLES = {
    "fuzz_target": 80,
    "embedding": 30,
    "embedding_tokenizer": 30,
    "embedding_encoder": 30,
    "embedding_pooling": 40,
    "whisper": 16,
    "stable_diffusion": 16,
    "whisper_encoder": 12,
    "whisper_decoder": 12,
    "text_encoder": 12,
    "unet": 12,
    "vae_decoder": 12,
}
TARGETS = [pytest.param("server", marks=pytest.mark.server), "local"]
#: Seconds to wait for an answer tritonserver is known never to give.
HANG_TIMEOUT = 3.0


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


def run_corpus(contract: ModelContract, handle: Callable[[FuzzCase], None]) -> list[FuzzCase]:
    """Run ``handle`` on a hypothesis corpus for the model: half well-formed requests (whose values may
    still be bad), half with one or two structural faults. Returns the requests drawn, in order."""
    drawn: list[FuzzCase] = []
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
            drawn.append(case)
            handle(case)

        property_holds()
    return drawn


def corpus_digest(cases: list[FuzzCase]) -> str:
    digest = hashlib.sha256()
    for case in cases:
        digest.update(case_digest(case))
    return digest.hexdigest()


@pytest.fixture(scope="session")
def corpora() -> dict[str, list[FuzzCase]]:
    """The corpus of each model, as first drawn in this session."""
    return {}


@pytest.fixture(scope="module")
def contracts(
    embedding_references: EmbeddingReferences, tiny_checkpoints: TinyCheckpoints
) -> dict[str, ModelContract]:
    return all_contracts(embedding_references, tiny_checkpoints)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> tuple[str, Any]:
    name = request.param
    return name, request.getfixturevalue("triton" if name == "server" else "local_triton")


@pytest.mark.parametrize("model", sorted(EXAMPLES))
def test_fuzzed_requests_get_the_right_answer_or_invalid_arg(
    model: str,
    target: tuple[str, Any],
    contracts: dict[str, ModelContract],
    corpora: dict[str, list[FuzzCase]],
    fuzz_statistics: FuzzStatistics,
) -> None:
    name, client = target
    contract = contracts[model]

    def send(case: FuzzCase) -> None:
        if currently_in_test_context():  # drawn by hypothesis (not replayed): report it if it fails
            note(case.describe())
        expected = expectation(contract, case)
        view = client.client(case.protocol) if name == "server" else client
        if name == "server" and expected.server_hangs:  # a tritonserver bug, see reliability_fuzz
            answer = ask(view, case, timeout=HANG_TIMEOUT)
            assert isinstance(answer, InferTimeout), f"tritonserver answered {answer}\n{case.describe()}"
            fuzz_statistics.record(name, case, expected, "timeout")
            return
        outcome = check_answer(contract, case, expected, ask(view, case))
        if name == "server":
            assert client.is_running(), "tritonserver exited"
        fuzz_statistics.record(name, case, expected, outcome)

    if model in corpora:
        for case in corpora[model]:
            send(case)
    else:
        corpora[model] = run_corpus(contract, send)
    fuzz_statistics.corpus_digests[f"{name}/{model}"] = corpus_digest(corpora[model])

    # Still serving: healthy, and a good request gets the right answer.
    if name == "server":
        health = client.health()
        assert health.healthy, health.describe()
    assert client.is_model_ready(model)
    assert contract.good_request is not None
    good = FuzzCase(model, contract.good_request(), None, None, [], "grpc")
    expected = expectation(contract, good)
    assert expected.outputs is not None, f"the good request of {model} is refused: {expected.names}"
    check_answer(contract, good, Expectation(outputs=expected.outputs), ask(client, good))


@pytest.mark.server
def test_tritonserver_never_answers_an_empty_batch_without_elements(triton: Any, local_triton: Any) -> None:
    """tritonserver 2.51 accepts a request of batch size 0 whose inputs hold no element, then never
    executes nor answers it: the client's timeout is what ends the call. The server keeps serving.
    ``LocalTriton`` answers it instead (here with pbkit's own INVALID_ARG for an empty batch)."""
    empty = {"VALUES": np.zeros((0, 0), np.float32)}
    for protocol in ("grpc", "http"):
        with pytest.raises(InferTimeout):
            triton.client(protocol).infer("fuzz_target", empty, timeout=HANG_TIMEOUT)
    np.testing.assert_array_equal(
        triton.infer("fuzz_target", {"VALUES": np.ones((1, 2), np.float32)}, timeout=30)["TOTAL"], [[6.0]]
    )
    assert triton.health().healthy
    with pytest.raises(InferError) as raised:
        local_triton.infer("fuzz_target", empty, timeout=30)
    assert (raised.value.code, raised.value.message) == (
        "INVALID_ARG",
        "request for model 'fuzz_target' has batch size 0",
    )
