"""The typed submodel handle (``BoundSubmodel``) against the fake ``pb_utils``, request by request.

``Recording`` is the fake ``pb_utils`` with ``InferenceRequest`` replaced by a recorder that
answers with prepared responses, so each test sees exactly what the handle sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import pbkit
from pbkit.runtime.bls import BoundSubmodel, bind_submodels
from pbkit.testing import fake

PB = fake.install()

ENCODER = pbkit.Submodel(
    "encoder",
    inputs=[pbkit.Input("features", "FP32", [4]), pbkit.Input("text", "BYTES", [1], optional=True)],
    outputs=[pbkit.Output("embedding", "FP32", [8]), pbkit.Output("label", "BYTES", [1])],
    max_batch_size=8,
    timeout_us=5_000,
)


class Recording:
    """``pb_utils`` whose ``InferenceRequest`` records its arguments and answers with ``responses``."""

    def __init__(self, *responses: Any) -> None:
        self.Tensor = PB.Tensor
        self.requests: list[dict[str, Any]] = []
        self.responses = list(responses)
        self.raise_on_exec: Exception | None = None

    def InferenceRequest(self, **kwargs: Any) -> Any:  # named as in pb_utils
        self.requests.append(kwargs)
        recording = self

        class Request:
            def exec(self, decoupled: bool = False) -> Any:
                if recording.raise_on_exec is not None:
                    raise recording.raise_on_exec
                return recording.responses.pop(0)

            async def async_exec(self, decoupled: bool = False) -> Any:
                return self.exec(decoupled)

        return Request()


def response(**outputs: np.ndarray) -> Any:
    return PB.InferenceResponse([PB.Tensor(name, value) for name, value in outputs.items()])


EMBEDDING = np.arange(16, dtype=np.float32).reshape(2, 8)
LABEL = np.array([[b"a"], [b"b"]], dtype=object)


def test_numpy_in_numpy_out_with_declared_outputs_timeout_and_parameters() -> None:
    pb = Recording(response(embedding=EMBEDDING, label=LABEL))
    handle = BoundSubmodel(ENCODER, pb)
    result = handle(features=np.zeros((2, 4), np.float32), parameters={"beam": 2})
    np.testing.assert_array_equal(result["embedding"], EMBEDDING)
    assert result["label"].tolist() == LABEL.tolist()
    [sent] = pb.requests
    assert sent["model_name"] == "encoder"
    assert sent["requested_output_names"] == ["embedding", "label"]
    assert sent["timeout"] == 5_000 and sent["parameters"] == {"beam": 2}
    assert [t.name() for t in sent["inputs"]] == ["features"]  # the optional input was not given


def test_torch_in_torch_out_but_bytes_stay_numpy_and_str_is_encoded() -> None:
    pb = Recording(response(embedding=EMBEDDING, label=LABEL))
    handle = BoundSubmodel(ENCODER, pb)
    result = handle(features=torch.zeros(2, 4), text=np.array([["héllo"], ["x"]]), timeout_us=0)
    assert isinstance(result["embedding"], torch.Tensor)
    torch.testing.assert_close(result["embedding"], torch.from_numpy(EMBEDDING))
    assert isinstance(result["label"], np.ndarray) and result["label"].dtype == object
    [sent] = pb.requests
    assert "timeout" not in sent  # 0: no timeout
    text = next(t for t in sent["inputs"] if t.name() == "text").as_numpy()
    assert text.tolist() == [["héllo".encode()], [b"x"]]


def test_requesting_some_outputs() -> None:
    pb = Recording(response(label=LABEL))
    result = BoundSubmodel(ENCODER, pb)(
        features=np.zeros((2, 4), np.float32), outputs=["label"], as_torch=True
    )
    assert pb.requests[0]["requested_output_names"] == ["label"] and list(result) == ["label"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"features": np.zeros((1, 4), np.float64)}, r"input 'features': expected data type FP32, got FP64"),
        ({"features": torch.zeros(1, 4, dtype=torch.int64)}, r"input 'features': expected data type FP32"),
        (
            {"feature": np.zeros((1, 4), np.float32)},
            r"has no input 'feature'; inputs are \['features', 'text'\]",
        ),
    ],
)
def test_inputs_are_checked_before_sending(inputs: dict[str, Any], message: str) -> None:
    pb = Recording()
    with pytest.raises(TypeError, match=message):
        BoundSubmodel(ENCODER, pb)(**inputs)
    assert pb.requests == []


def test_error_responses_and_missing_outputs_raise_submodel_error() -> None:
    pb = Recording(
        PB.InferenceResponse(error=PB.TritonError("out of memory")),
        response(embedding=EMBEDDING),
    )
    handle = BoundSubmodel(ENCODER, pb)
    with pytest.raises(pbkit.SubmodelError, match=r"^submodel 'encoder' failed: out of memory$") as raised:
        handle(features=np.zeros((2, 4), np.float32))
    assert (raised.value.submodel, raised.value.submodel_message) == ("encoder", "out of memory")
    with pytest.raises(pbkit.SubmodelError, match=r"lacks requested output\(s\) \['label'\]"):
        handle(features=np.zeros((2, 4), np.float32))


def test_a_call_that_cannot_be_made_raises_submodel_error() -> None:
    pb = Recording()
    pb.raise_on_exec = PB.TritonModelException("BLS is only supported during the 'execute' function.")
    with pytest.raises(
        pbkit.SubmodelError, match=r"submodel 'encoder' failed: TritonModelException: BLS is only"
    ):
        BoundSubmodel(ENCODER, pb)(features=np.zeros((1, 4), np.float32))
    with pytest.raises(pbkit.SubmodelError, match="BLS is only supported"):
        BoundSubmodel(ENCODER, PB)(features=np.zeros((1, 4), np.float32))  # the real fake, outside execute


class SlowIterator:
    """Decoupled responses: the second one comes only after ``release`` is set (or a timeout)."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def __iter__(self) -> Iterator[Any]:
        yield response(embedding=EMBEDDING[:1], label=LABEL[:1])
        if not self.release.wait(timeout=5):
            raise TimeoutError("the event loop was blocked while waiting for a response")
        yield response(embedding=EMBEDDING[1:], label=LABEL[1:])
        yield PB.InferenceResponse([])  # the empty final response


def test_astream_waits_for_responses_without_blocking_the_event_loop() -> None:
    release = threading.Event()
    pb = Recording(SlowIterator(release))
    handle = BoundSubmodel(ENCODER, pb)

    async def consume() -> list[np.ndarray]:
        return [part["embedding"] async for part in handle.astream(features=np.zeros((1, 4), np.float32))]

    async def unblock() -> None:
        await asyncio.sleep(0.05)
        release.set()

    async def both() -> list[np.ndarray]:
        parts, _ = await asyncio.gather(consume(), unblock())
        return parts

    parts = asyncio.run(both())
    assert [p.tolist() for p in parts] == [EMBEDDING[:1].tolist(), EMBEDDING[1:].tolist()]


def test_stream_skips_the_empty_final_response() -> None:
    release = threading.Event()
    release.set()
    pb = Recording(SlowIterator(release))
    parts = list(BoundSubmodel(ENCODER, pb).stream(features=np.zeros((1, 4), np.float32)))
    assert len(parts) == 2


def test_bind_submodels_replaces_class_attributes_but_keeps_instance_callables() -> None:
    class Pipeline:
        encoder = ENCODER
        other = ENCODER

    pipeline = Pipeline()
    pipeline.other = lambda **inputs: {"embedding": "replaced"}  # type: ignore[assignment,misc]
    bound = bind_submodels(pipeline, Recording())
    assert set(bound) == {"encoder", "other"}
    assert isinstance(pipeline.encoder, BoundSubmodel)
    assert pipeline.other() == {"embedding": "replaced"}
    with pytest.raises(RuntimeError, match="submodel 'encoder' is not bound"):
        Pipeline().encoder  # noqa: B018 - outside a running model
