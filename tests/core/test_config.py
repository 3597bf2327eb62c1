"""Declarations render through model_config_pb2 and parse back to the same declaration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

import pbkit
from pbkit import BYTES, FP16, INT64
from pbkit.config import config_view, model_config, parse_config, render, spec_from_config


def roundtrip(spec: pbkit.ModelSpec) -> pbkit.ModelSpec:
    return spec_from_config(parse_config(render(model_config(spec))))


def test_every_core_model_roundtrips(core_models) -> None:
    classes = [v for v in vars(core_models).values() if isinstance(v, type) and hasattr(v, "__pbkit_spec__")]
    assert len(classes) >= 9
    for cls in classes:
        spec = pbkit.spec_of(cls)
        assert roundtrip(spec) == config_view(spec), spec.name


def test_full_declaration_roundtrips() -> None:
    class Out(TypedDict):
        Y: FP16[-1, 3]

    @pbkit.model(
        name="full",
        max_batch_size=32,
        dynamic_batching=pbkit.DynamicBatching(
            preferred_batch_sizes=(8, 16),
            max_queue_delay_us=1500,
            preserve_ordering=True,
            priority_levels=2,
            default_priority_level=1,
            queue_policy=pbkit.QueuePolicy("DELAY", 100, True, 64),
        ),
        instances=[pbkit.InstanceGroup("GPU", 2, gpus=(0, 1)), pbkit.InstanceGroup("CPU", 1)],
        parameters={"checkpoint": "/models/x", "threads": 2, "fast": True},
        warmup=[pbkit.Warmup("w", {"X": pbkit.WarmupInput("INT64", [4], "random")}, batch_size=2)],
        version_policy=pbkit.VersionPolicy.specific(1, 3),
        response_cache=True,
    )
    class Full:
        def predict(self, X: INT64[4], S: BYTES[1] | None = None) -> Out:
            return {"Y": np.zeros((len(X), 2, 3), np.float16)}

    spec = pbkit.spec_of(Full)
    assert spec.parameters == {"checkpoint": "/models/x", "threads": "2", "fast": "true"}
    assert roundtrip(spec) == config_view(spec)


def test_max_batch_size_zero_in_text() -> None:
    @pbkit.model(outputs=[pbkit.Output("Y", "FP32", [2])])
    class Plain:
        def predict(self, X: pbkit.FP32[2]) -> dict[str, np.ndarray]:
            return {"Y": X}

    text = render(model_config(pbkit.spec_of(Plain)))
    assert "max_batch_size: 0\n" in text
    parsed = parse_config(text)
    assert isinstance(parsed, model_config_pb2.ModelConfig) and parsed.max_batch_size == 0
    assert "dynamic_batching" not in text


def test_decoupled_detected_from_generator() -> None:
    class Piece(TypedDict):
        P: BYTES[1]

    @pbkit.model(max_batch_size=2)
    class Gen:
        def predict(self, X: INT64[1]) -> Iterator[Piece]:
            yield {"P": np.array([[b"x"]] * len(X), dtype=object)}

    spec = pbkit.spec_of(Gen)
    assert spec.decoupled
    assert "decoupled: true" in render(model_config(spec))


def test_annotation_errors_are_clear() -> None:
    with pytest.raises(TypeError, match="parameter 'X' needs a tensor annotation"):

        @pbkit.model(outputs=[pbkit.Output("Y", "FP32", [1])])
        class NoAnnotation:
            def predict(self, X):  # type: ignore[no-untyped-def]
                return {"Y": X}

    with pytest.raises(TypeError, match="return annotation must be a TypedDict"):

        @pbkit.model
        class BadReturn:
            def predict(self, X: pbkit.FP32[1]) -> int:
                return 1

    with pytest.raises(TypeError, match="input 'Z' is declared but predict has no parameter"):

        @pbkit.model(inputs=[pbkit.Input("Z", "FP32", [1])], outputs=[pbkit.Output("Y", "FP32", [1])])
        class Mismatch:
            def predict(self, X: pbkit.FP32[1]) -> dict[str, np.ndarray]:
                return {"Y": X}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": -1}, "max_batch_size must be an int >= 0"),
        ({"dynamic_batching": True}, "needs max_batch_size > 0"),
        (
            {"max_batch_size": 4, "dynamic_batching": pbkit.DynamicBatching(preferred_batch_sizes=(8,))},
            "exceed max_batch_size",
        ),
        ({"name": "../evil"}, "path separator"),
        ({"name": "a\nb"}, "control characters"),
        ({"parameters": {"bad key": "x"}}, "parameter name 'bad key' is not allowed"),
        ({"group_by": ["NOPE"]}, "group_by names 'NOPE'"),
    ],
)
def test_invalid_declarations_rejected(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[").replace("(", r"\(")):

        @pbkit.model(outputs=[pbkit.Output("Y", "FP32", [1])], **kwargs)
        class Broken:
            def predict(self, X: pbkit.FP32[1]) -> dict[str, np.ndarray]:
                return {"Y": X}


@pytest.mark.parametrize("name", ["a/b", "..", "x\x00y", 'q"uote', "sp ace", ""])
def test_unsafe_tensor_names_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        pbkit.Input(name, "FP32", [1])
