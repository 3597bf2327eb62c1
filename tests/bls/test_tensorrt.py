"""TensorRT: the exact trtexec/polygraphy commands, and the plan-building path (with a stand-in trtexec)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from bls_helpers import FakeTrtexec

import pbkit
from pbkit.export import (
    ExportError,
    TensorRTUnavailable,
    build_plan,
    polygraphy_command,
    shape_profile,
    trtexec_command,
)

ENCODER = pbkit.Submodel(
    "encoder",
    inputs=[pbkit.Input("features", "FP32", [4])],
    outputs=[pbkit.Output("embedding", "FP32", [8])],
    max_batch_size=8,
)
AUDIO = pbkit.Submodel(
    "audio_encoder",
    inputs=[pbkit.Input("input_features", "FP32", [80, -1]), pbkit.Input("mask:0", "INT32", [-1])],
    outputs=[pbkit.Output("hidden", "FP16", [-1, 384])],
    max_batch_size=4,
)
STATIC = pbkit.Submodel(
    "static", inputs=[pbkit.Input("x", "FP32", [3, 3])], outputs=[pbkit.Output("y", "FP32", [3])]
)


def test_batch_only_profile_is_derived_from_the_declaration() -> None:
    assert trtexec_command(ENCODER, "onnx/encoder.onnx", plan_path="encoder.plan") == (
        "trtexec --onnx=onnx/encoder.onnx --saveEngine=encoder.plan --minShapes=features:1x4 "
        "--optShapes=features:8x4 --maxShapes=features:8x4 --fp16"
    )
    assert trtexec_command(ENCODER, "e.onnx", fp16=False, opt_batch=2, workspace_mib=2048) == (
        "trtexec --onnx=e.onnx --saveEngine=model.plan --minShapes=features:1x4 --optShapes=features:2x4 "
        "--maxShapes=features:8x4 --memPoolSize=workspace:2048M"
    )


def test_variable_dims_need_given_shapes_and_names_with_colons_are_quoted() -> None:
    shapes = {
        "min_shapes": {"input_features": (1, 80, 100), "mask:0": (1, 100)},
        "opt_shapes": {"input_features": (2, 80, 1500), "mask:0": (2, 1500)},
        "max_shapes": {"input_features": (4, 80, 3000), "mask:0": (4, 3000)},
    }
    command = trtexec_command(AUDIO, "/models/a b/audio.onnx", plan_path="/out/model.plan", **shapes)
    assert shlex.split(command) == [
        "trtexec",
        "--onnx=/models/a b/audio.onnx",
        "--saveEngine=/out/model.plan",
        "--minShapes=input_features:1x80x100,'mask:0':1x100",
        "--optShapes=input_features:2x80x1500,'mask:0':2x1500",
        "--maxShapes=input_features:4x80x3000,'mask:0':4x3000",
        "--fp16",
    ]
    assert polygraphy_command(AUDIO, "audio.onnx", **shapes) == (
        "polygraphy convert audio.onnx --convert-to trt -o model.plan --fp16 "
        "--trt-min-shapes 'input_features:[1,80,100]' 'mask:0:[1,100]' "
        "--trt-opt-shapes 'input_features:[2,80,1500]' 'mask:0:[2,1500]' "
        "--trt-max-shapes 'input_features:[4,80,3000]' 'mask:0:[4,3000]'"
    )


def test_a_static_model_gets_no_shape_flags() -> None:
    assert trtexec_command(STATIC, "s.onnx") == "trtexec --onnx=s.onnx --saveEngine=model.plan --fp16"
    assert shape_profile(STATIC).inputs == []


def test_partial_shapes_are_completed_from_the_declaration() -> None:
    profile = shape_profile(ENCODER, opt_shapes={"features": (4, 4)})
    assert (profile.min, profile.opt, profile.max) == (
        {"features": (1, 4)},
        {"features": (4, 4)},
        {"features": (8, 4)},
    )


@pytest.mark.parametrize(
    ("submodel", "shapes", "message"),
    [
        (AUDIO, {}, r"input 'input_features' .* variable dims \[80, -1\]; give its min, opt, max shape"),
        (
            ENCODER,
            {"min_shapes": {"features": (2, 4)}, "opt_shapes": {"features": (1, 4)}},
            "min <= opt <= max",
        ),
        (ENCODER, {"max_shapes": {"features": (16, 4)}}, r"max batch 16 exceeds max_batch_size \(8\)"),
        (ENCODER, {"max_shapes": {"features": (8, 5)}}, r"max shape \[8, 5\] does not fit \[-1, 4\]"),
        (ENCODER, {"min_shapes": {"nope": (1, 4)}}, r"shapes given for \['nope'\]"),
        (STATIC, {"min_shapes": {"x": (3, 3)}}, "has a fixed shape; give no shapes"),
        (ENCODER, {"opt_batch": 9}, r"opt_batch 9 is outside 1..max_batch_size \(8\)"),
    ],
)
def test_bad_shapes_are_rejected(submodel: pbkit.Submodel, shapes: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        trtexec_command(submodel, "m.onnx", **shapes)


def test_build_plan_runs_trtexec(fake_trtexec: FakeTrtexec, tmp_path: Path) -> None:
    onnx_file = tmp_path / "encoder.onnx"
    onnx_file.write_bytes(b"onnx")
    plan = build_plan(ENCODER, onnx_file, tmp_path / "plans" / "model.plan", trtexec=str(fake_trtexec.path))
    assert plan.read_bytes() == b"engine built from " + str(onnx_file).encode()
    assert (
        fake_trtexec.argv()
        == shlex.split(trtexec_command(ENCODER, onnx_file, plan_path=tmp_path / "plans" / "model.plan"))[1:]
    )


def test_build_plan_finds_trtexec_on_path(
    fake_trtexec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{fake_trtexec.path.parent}:{Path(sys.executable).parent}")
    folder_export = tmp_path / "encoder.onnx"
    folder_export.mkdir()
    (folder_export / "model.onnx").write_bytes(b"onnx")
    build_plan(ENCODER, folder_export, tmp_path / "model.plan", fp16=False)
    assert f"--onnx={folder_export / 'model.onnx'}" in fake_trtexec.argv()  # the file inside a folder export
    assert "--fp16" not in fake_trtexec.argv()


def test_a_failing_trtexec_is_reported_with_its_output(fake_trtexec: FakeTrtexec, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"trtexec failed with exit code 3:\nFailed to parse onnx file"):
        build_plan(
            ENCODER, tmp_path / "missing.onnx", tmp_path / "model.plan", trtexec=str(fake_trtexec.path)
        )


def test_without_tensorrt_the_error_carries_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no trtexec here
    with pytest.raises(TensorRTUnavailable) as raised:
        build_plan(ENCODER, tmp_path / "e.onnx", tmp_path / "model.plan", using="trtexec")
    assert raised.value.command == trtexec_command(
        ENCODER, tmp_path / "e.onnx", plan_path=tmp_path / "model.plan"
    )
    assert raised.value.command in str(raised.value)
    assert not (tmp_path / "model.plan").exists()
