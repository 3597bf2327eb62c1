"""ONNX export: declared names, variable axes, self-contained files, and parity with torch.

Tests about the exported file itself use the default exporter (torch.export based, a few
seconds each); tests about pbkit's own checks use the faster TorchScript-based exporter.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest
import torch

import pbkit
from pbkit.export import DEFAULT_ATOL, DEFAULT_RTOL, ExportError, ParityError, export_onnx


def features(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, generator=torch.Generator().manual_seed(seed))


def run_onnx(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs), strict=True))


def test_encoder_export_has_declared_names_and_matches_torch(bls: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "encoder.onnx"
    report = export_onnx(
        bls.networks.make_encoder(), bls.submodels.encoder, {"features": features(2)}, path=path
    )

    assert report.passed and report.path == path and report.kind == "onnx"
    assert [c.label for c in report.checks] == ["example inputs", "example inputs, batch doubled"]
    assert report.max_abs_error < 1e-5
    assert (report.atol, report.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL) == (1e-4, 1e-3)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [given] = session.get_inputs()
    [produced] = session.get_outputs()
    assert (given.name, given.type, given.shape[1]) == ("features", "tensor(float)", 4)
    assert (produced.name, produced.type, produced.shape[1]) == ("embedding", "tensor(float)", 8)
    assert isinstance(given.shape[0], str) and isinstance(produced.shape[0], str)  # a variable batch axis

    batch = features(5, seed=7)
    expected = bls.networks.make_encoder()(batch)["embedding"].detach().numpy()
    np.testing.assert_allclose(run_onnx(path, {"features": batch.numpy()})["embedding"], expected, atol=1e-5)


def test_exported_file_survives_a_rename(bls: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "first" / "encoder.onnx"
    export_onnx(bls.networks.make_encoder(), bls.submodels.encoder, {"features": features(2)}, path=path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["encoder.onnx"]  # no external data beside it

    moved = tmp_path / "elsewhere" / "model.onnx"
    moved.parent.mkdir()
    shutil.move(path, moved)
    shutil.rmtree(path.parent)
    batch = features(3, seed=1)
    expected = bls.networks.make_encoder()(batch)["embedding"].detach().numpy()
    np.testing.assert_allclose(run_onnx(moved, {"features": batch.numpy()})["embedding"], expected, atol=1e-5)


def test_external_data_goes_in_a_folder_that_moves_as_a_whole(bls: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "projector.onnx"
    report = export_onnx(
        bls.networks.make_projector(),
        bls.submodels.projector,
        {"features": features(3)},
        path=path,
        external_data=True,
    )
    assert report.passed and path.is_dir()
    assert (path / "model.onnx").is_file() and len(list(path.iterdir())) == 2

    moved = tmp_path / "repository" / "bls_projector" / "1" / "model.onnx"
    moved.parent.mkdir(parents=True)
    shutil.move(path, moved)  # the layout Triton's ONNX Runtime backend loads
    batch = features(2, seed=4)
    expected = bls.networks.make_projector()(batch).detach().numpy()
    np.testing.assert_allclose(
        run_onnx(moved / "model.onnx", {"features": batch.numpy()})["projection"], expected, atol=1e-5
    )


def test_exporting_again_replaces_a_folder_export_with_a_file(bls: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "projector.onnx"
    args = (bls.networks.make_projector(), bls.submodels.projector, {"features": features(3)})
    export_onnx(*args, path=path, external_data=True, exporter="torchscript")
    export_onnx(*args, path=path, external_data=False, exporter="torchscript")
    assert path.is_file()


def test_torchscript_based_exporter_and_extra_checks(bls: SimpleNamespace, tmp_path: Path) -> None:
    report = export_onnx(
        bls.networks.make_projector(),
        bls.submodels.projector,
        {"features": features(3).numpy()},  # numpy examples work too
        path=tmp_path / "p.onnx",
        exporter="torchscript",
        check_inputs=[{"features": features(8, seed=2)}, {"features": features(1, seed=3)}],
    )
    assert report.exporter == "torchscript" and report.passed
    assert [c.input_shapes["features"] for c in report.checks] == [(3, 4), (6, 4), (8, 4), (1, 4)]


class SignFlip(torch.nn.Module):
    """Data-dependent control flow: tracing keeps only the branch the example takes."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if bool(features.sum() > 0):
            return features * 2
        return -features


def test_output_outside_tolerance_raises_parity_error_with_the_report(tmp_path: Path) -> None:
    submodel = pbkit.Submodel(
        "flip",
        inputs=[pbkit.Input("features", "FP32", [4])],
        outputs=[pbkit.Output("flipped", "FP32", [4])],
        max_batch_size=4,
    )
    positive = torch.ones(1, 4)
    with pytest.raises(ParityError) as raised:
        export_onnx(
            SignFlip(),
            submodel,
            {"features": positive},
            path=tmp_path / "flip.onnx",
            exporter="torchscript",
            check_inputs=[{"features": -positive}],
        )
    report = raised.value.report
    assert [c.passed for c in report.checks] == [True, True, False]
    [difference] = report.checks[-1].outputs
    assert difference.name == "flipped" and difference.max_abs_error == pytest.approx(3.0)  # -2 against 1
    assert not difference.within_tolerance
    assert "check_inputs[0]" in str(raised.value) and "exceeds tolerance" in str(raised.value)
    assert (tmp_path / "flip.onnx").is_file()  # written, but reported as wrong


def test_tolerance_is_atol_plus_rtol_times_the_torch_value() -> None:
    from pbkit.export._torch_io import compare

    reference = {"y": np.array([1000.0, 1.0], dtype=np.float32), "n": np.array([3, 4])}
    actual = {"y": np.array([1000.5, 1.0], dtype=np.float32), "n": np.array([3, 4])}
    [within, exact] = compare(reference, actual, atol=1e-4, rtol=1e-3)  # allows 1.0001 at 1000
    assert within.within_tolerance and within.max_abs_error == pytest.approx(0.5)
    assert exact.within_tolerance and exact.max_abs_error == 0
    [outside, _] = compare(reference, actual, atol=1e-4, rtol=1e-4)  # allows 0.1001 at 1000
    assert not outside.within_tolerance and outside.excess == pytest.approx(0.3999, abs=1e-6)
    [_, wrong] = compare(reference, {"y": actual["y"], "n": np.array([3, 5])}, atol=10.0, rtol=1.0)
    assert not wrong.within_tolerance  # integers must be equal whatever the tolerance
    [reshaped, _] = compare(
        reference, {"y": np.ones((2, 1), np.float32), "n": reference["n"]}, atol=9, rtol=9
    )
    assert not reshaped.within_tolerance


class FrozenBatch(torch.nn.Module):
    """Runs in torch at any batch size, but tracing turns the batch size into a constant."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + torch.zeros(int(features.shape[0]), 4)


class OnlyBatchTwo(torch.nn.Module):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + torch.zeros(2, 4)


BATCHING = pbkit.Submodel(
    "batching",
    inputs=[pbkit.Input("features", "FP32", [4])],
    outputs=[pbkit.Output("out", "FP32", [4])],
    max_batch_size=4,
)


def test_a_batch_size_frozen_by_the_exporter_is_caught(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"fixed size 2|batch doubled"):
        export_onnx(
            FrozenBatch(),
            BATCHING,
            {"features": features(2)},
            path=tmp_path / "f.onnx",
            exporter="torchscript",
        )


def test_a_module_that_cannot_batch_in_torch_is_reported(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match=r"fails in torch on the example inputs, batch doubled: RuntimeError"
    ):
        export_onnx(OnlyBatchTwo(), BATCHING, {"features": features(2)}, path=tmp_path / "f.onnx")


def test_variable_dims_become_named_dynamic_axes(tmp_path: Path) -> None:
    class Pool(torch.nn.Module):
        def forward(self, frames: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"pooled": frames.mean(dim=1) * scale, "length": torch.full_like(scale, frames.shape[1])}

    submodel = pbkit.Submodel(
        "pool",
        inputs=[pbkit.Input("frames", "FP32", [-1, 3]), pbkit.Input("scale", "FP32", [1])],
        outputs=[pbkit.Output("pooled", "FP32", [3]), pbkit.Output("length", "FP32", [1])],
        max_batch_size=8,
    )
    report = export_onnx(
        Pool(),
        submodel,
        {"frames": torch.randn(2, 5, 3), "scale": torch.ones(2, 1)},
        path=tmp_path / "pool.onnx",
        dynamic_axes={"frames": {1: "frames"}},
        check_inputs=[{"frames": torch.randn(3, 11, 3), "scale": torch.full((3, 1), 2.0)}],
    )
    assert report.dynamic_axes["frames"] == {0: "batch", 1: "frames"}
    assert report.passed and len(report.checks) == 3
    session = onnxruntime.InferenceSession(str(tmp_path / "pool.onnx"), providers=["CPUExecutionProvider"])
    frames = next(i for i in session.get_inputs() if i.name == "frames")
    assert all(isinstance(d, str) for d in frames.shape[:2]) and frames.shape[2] == 3


def test_integer_outputs_must_be_equal(tmp_path: Path) -> None:
    class Argmax(torch.nn.Module):
        def forward(self, scores: torch.Tensor) -> torch.Tensor:
            return scores.argmax(dim=1, keepdim=True)

    submodel = pbkit.Submodel(
        "argmax",
        inputs=[pbkit.Input("scores", "FP32", [5])],
        outputs=[pbkit.Output("best", "INT64", [1])],
        max_batch_size=4,
    )
    report = export_onnx(
        Argmax(), submodel, {"scores": torch.randn(2, 5)}, path=tmp_path / "a.onnx", exporter="torchscript"
    )
    assert report.passed and report.checks[0].outputs[0].max_abs_error == 0


@pytest.mark.parametrize(
    ("example", "message"),
    [
        (
            {"features": torch.randn(2, 4, dtype=torch.float64)},
            r"input 'features' .* torch.float64, declared FP32",
        ),
        ({}, r"missing \['features'\]"),
        ({"features": torch.randn(2, 4), "extra": torch.randn(2)}, r"unknown \['extra'\]"),
        ({"features": torch.randn(2, 5)}, r"shape \[2, 5\], expected \['batch', 4\]"),
        ({"features": torch.randn(9, 4)}, r"batch size 9, outside 1..max_batch_size \(8\)"),
    ],
)
def test_examples_must_fit_the_declaration(
    bls: SimpleNamespace, tmp_path: Path, example: dict[str, torch.Tensor], message: str
) -> None:
    with pytest.raises(ExportError, match=message):
        export_onnx(bls.networks.make_encoder(), bls.submodels.encoder, example, path=tmp_path / "e.onnx")
    assert not (tmp_path / "e.onnx").exists()


def test_module_outputs_must_fit_the_declaration(bls: SimpleNamespace, tmp_path: Path) -> None:
    class Double(torch.nn.Module):
        def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"embedding": torch.cat([features, features], dim=1).double()}

    class Wrong(torch.nn.Module):
        def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"other": features}

    with pytest.raises(ExportError, match=r"output 'embedding' as float64, declared FP32"):
        export_onnx(Double(), bls.submodels.encoder, {"features": features(2)}, path=tmp_path / "d.onnx")
    with pytest.raises(
        ExportError, match=r"returned \['other'\], without declared output\(s\) \['embedding'\]"
    ):
        export_onnx(Wrong(), bls.submodels.encoder, {"features": features(2)}, path=tmp_path / "w.onnx")


def test_positional_modules_get_inputs_in_declared_order(tmp_path: Path) -> None:
    class Difference(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a - b, a + b

    submodel = pbkit.Submodel(
        "difference",
        inputs=[pbkit.Input("LEFT", "FP32", [2]), pbkit.Input("RIGHT", "FP32", [2])],
        outputs=[pbkit.Output("DIFF", "FP32", [2]), pbkit.Output("SUM", "FP32", [2])],
        max_batch_size=2,
    )
    left, right = torch.tensor([[5.0, 7.0]]), torch.tensor([[1.0, 2.0]])
    export_onnx(
        Difference(),
        submodel,
        {"RIGHT": right, "LEFT": left},
        path=tmp_path / "d.onnx",
        exporter="torchscript",
    )
    outputs = run_onnx(tmp_path / "d.onnx", {"LEFT": left.numpy(), "RIGHT": right.numpy()})
    np.testing.assert_array_equal(outputs["DIFF"], [[4.0, 5.0]])
    np.testing.assert_array_equal(outputs["SUM"], [[6.0, 9.0]])


def test_training_mode_is_restored(bls: SimpleNamespace, tmp_path: Path) -> None:
    network = bls.networks.make_projector().train()
    export_onnx(
        network,
        bls.submodels.projector,
        {"features": features(2)},
        path=tmp_path / "p.onnx",
        exporter="torchscript",
    )
    assert all(m.training for m in network.modules())


def test_a_submodel_without_batching_exports_with_fixed_shapes(tmp_path: Path) -> None:
    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    submodel = pbkit.Submodel(
        "static", inputs=[pbkit.Input("x", "FP32", [3])], outputs=[pbkit.Output("y", "FP32", [3])]
    )
    report = export_onnx(Double(), submodel, {"x": torch.ones(3)}, path=tmp_path / "s.onnx")
    assert report.passed and report.dynamic_axes == {} and len(report.checks) == 1  # no batch to double
    session = onnxruntime.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [3] and session.get_outputs()[0].shape == [3]
