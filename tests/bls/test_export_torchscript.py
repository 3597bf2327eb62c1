"""TorchScript export: the saved forward takes the declared inputs and returns the declared outputs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pbkit
from pbkit.export import ExportError, ParityError, export_torchscript


def features(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, generator=torch.Generator().manual_seed(seed))


def test_traced_encoder_takes_declared_names_and_matches_torch(bls: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "encoder.pt"
    report = export_torchscript(
        bls.networks.make_encoder(),
        bls.submodels.encoder,
        {"features": features(2)},
        path=path,
        check_inputs=[{"features": features(7, seed=5)}],
    )
    assert report.passed and report.kind == "torchscript" and report.exporter == "trace"
    assert [c.input_shapes["features"] for c in report.checks] == [(2, 4), (4, 4), (7, 4)]
    assert report.notes == []

    loaded = torch.jit.load(str(path))
    assert [a.name for a in loaded.forward.schema.arguments[1:]] == ["features"]
    batch = features(3, seed=9)
    expected = bls.networks.make_encoder()(batch)["embedding"]
    torch.testing.assert_close(loaded(batch), expected)


class TwoHeads(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"total": x.sum(dim=1, keepdim=True), "doubled": x * 2}


def test_outputs_come_back_in_declared_order(tmp_path: Path) -> None:
    submodel = pbkit.Submodel(
        "heads",
        inputs=[pbkit.Input("input.values", "FP32", [3])],  # not a Python identifier
        outputs=[pbkit.Output("doubled", "FP32", [3]), pbkit.Output("total", "FP32", [1])],
        max_batch_size=4,
    )
    report = export_torchscript(
        TwoHeads(), submodel, {"input.values": torch.ones(1, 3)}, path=tmp_path / "h.pt"
    )
    assert report.passed
    assert "by position" in report.notes[0]  # Triton passes inputs by position then
    doubled, total = torch.jit.load(str(tmp_path / "h.pt"))(torch.tensor([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(doubled.numpy(), [[2.0, 4.0, 6.0]])
    np.testing.assert_array_equal(total.numpy(), [[6.0]])


class FrozenBatch(torch.nn.Module):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + torch.zeros(int(features.shape[0]), 4)


def test_a_batch_size_frozen_by_tracing_is_caught(tmp_path: Path) -> None:
    submodel = pbkit.Submodel(
        "frozen",
        inputs=[pbkit.Input("features", "FP32", [4])],
        outputs=[pbkit.Output("out", "FP32", [4])],
        max_batch_size=4,
    )
    with pytest.raises(ExportError, match=r"fails on the example inputs, batch doubled"):
        export_torchscript(FrozenBatch(), submodel, {"features": features(2)}, path=tmp_path / "f.pt")


class Clamp(torch.nn.Module):
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if bool(features.max() > 1):
            return features.clamp(max=1.0)
        return features


def test_traced_branch_that_misses_a_check_is_a_parity_error(tmp_path: Path) -> None:
    submodel = pbkit.Submodel(
        "clamp",
        inputs=[pbkit.Input("features", "FP32", [4])],
        outputs=[pbkit.Output("out", "FP32", [4])],
    )
    with pytest.raises(ParityError) as raised:
        export_torchscript(
            Clamp(),
            submodel,
            {"features": torch.zeros(4)},
            path=tmp_path / "c.pt",
            check_inputs=[{"features": torch.full((4,), 3.0)}],
        )
    assert [c.passed for c in raised.value.report.checks] == [True, False]
    assert raised.value.report.checks[1].outputs[0].max_abs_error == pytest.approx(2.0)


class Scriptable(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(3.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if bool(features.max() > 1):  # scripting keeps both branches
            return features.clamp(max=1.0) * self.scale
        return features * self.scale


def test_script_method_keeps_control_flow(tmp_path: Path) -> None:
    submodel = pbkit.Submodel(
        "scripted",
        inputs=[pbkit.Input("features", "FP32", [4])],
        outputs=[pbkit.Output("out", "FP32", [4])],
        max_batch_size=2,
    )
    report = export_torchscript(
        Scriptable(),
        submodel,
        {"features": torch.zeros(1, 4)},
        path=tmp_path / "s.pt",
        method="script",
        check_inputs=[{"features": torch.full((2, 4), 3.0)}],
    )
    assert report.passed and report.exporter == "script" and report.notes == []


def test_a_module_that_does_not_take_the_declared_inputs_is_reported(tmp_path: Path) -> None:
    submodel = pbkit.Submodel(
        "two_inputs",
        inputs=[pbkit.Input("features", "FP32", [4]), pbkit.Input("other", "FP32", [4])],
        outputs=[pbkit.Output("out", "FP32", [4])],
    )
    with pytest.raises(
        ExportError, match=r"submodel 'two_inputs' fails in torch on the example inputs: TypeError"
    ):
        export_torchscript(
            Scriptable(),
            submodel,
            {"features": torch.zeros(4), "other": torch.zeros(4)},
            path=tmp_path / "s.pt",
            method="script",
        )
    assert not (tmp_path / "s.pt").exists()
