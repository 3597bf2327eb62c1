"""``pbkit build`` rejects broken ensemble declarations, naming the step and the tensor.

Each test writes a small project (three models and an ensemble) where one thing is wrong,
runs ``pbkit build`` on it and checks the exit status and the message. A well-formed
variant of the same project builds, so each rejection is caused by the one change.
"""

from __future__ import annotations

import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pbkit.cli.main import main
from pbkit.config.parse import parse_config

MODELS = string.Template("""
import pbkit
from pbkit import Input, Output


def declare(name, inputs, outputs, max_batch_size=8):
    def predict(self, **tensors):
        raise AssertionError("declared only to be wired: build rejects it before anything runs")

    cls = type(name.title(), (), {"predict": predict})
    return pbkit.model(name=name, inputs=inputs, outputs=outputs, max_batch_size=max_batch_size)(cls)


Tok = declare(
    "tok",
    [Input("TEXT", "BYTES", [1])],
    [Output("input_ids", "$ids_dtype", [-1]), Output("attention_mask", "INT64", [-1])],
    max_batch_size=$tok_batch,
)
Enc = declare(
    "enc",
    [Input("input_ids", "INT64", [-1]), Input("attention_mask", "INT64", [-1])],
    [Output("hidden", "FP32", [-1, $hidden_dim])],
    max_batch_size=$enc_batch,
)
Pool = declare(
    "pool",
    [Input("hidden", "FP32", [-1, 384]), Input("$pool_mask", "INT64", [-1])],
    [Output("embedding", "FP32", [384])],
)
""")

GOOD_ENSEMBLE = """
ens = pbkit.Ensemble(
    "ens",
    steps=[Tok, Enc, pbkit.Step(Pool, outputs={"embedding": "EMBEDDING"})],
    inputs=[Input("TEXT", "BYTES", [1])],
    outputs=[Output("EMBEDDING", "FP32", [384])],
)
"""

DEFAULTS = {
    "ids_dtype": "INT64",
    "hidden_dim": 384,
    "pool_mask": "attention_mask",
    "tok_batch": 8,
    "enc_batch": 8,
}


def write_project(root: Path, ensemble: str = GOOD_ENSEMBLE, **changes: object) -> Path:
    project = root / "project"
    project.mkdir()
    source = MODELS.substitute({**DEFAULTS, **changes}) + textwrap.dedent(ensemble)
    (project / "decl.py").write_text(source, encoding="utf-8")
    return project


def build(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["build", str(project), "-o", str(project.parent / "repo")])
    captured = capsys.readouterr()
    return code, captured.err


def rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ensemble: str = GOOD_ENSEMBLE, **changes: object
) -> str:
    code, err = build(write_project(tmp_path, ensemble, **changes), capsys)
    assert code == 1, err
    assert "pbkit build: error:" in err
    assert not (tmp_path / "repo" / "ens").exists()
    return err


def test_well_formed_ensemble_builds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = build(write_project(tmp_path), capsys)
    assert code == 0, err
    config = parse_config((tmp_path / "repo" / "ens" / "config.pbtxt").read_text())
    assert config.platform == "ensemble"
    assert config.max_batch_size == 8
    steps = {step.model_name: step for step in config.ensemble_scheduling.step}
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["tok", "enc", "pool"]
    assert dict(steps["pool"].input_map) == {"hidden": "hidden", "attention_mask": "attention_mask"}
    assert dict(steps["pool"].output_map) == {"embedding": "EMBEDDING"}


def test_input_neither_produced_nor_an_ensemble_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = rejected(tmp_path, capsys, pool_mask="token_mask")
    assert (
        "input 'token_mask' of step 'pool' is neither an ensemble input nor produced by an earlier step"
        in err
    )


def test_rename_of_an_input_the_step_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ensemble = GOOD_ENSEMBLE.replace(
        'pbkit.Step(Pool, outputs={"embedding": "EMBEDDING"})',
        'pbkit.Step(Pool, inputs={"mask": "attention_mask"}, outputs={"embedding": "EMBEDDING"})',
    )
    err = rejected(tmp_path, capsys, ensemble)
    assert "step 'pool' has no input 'mask' to rename" in err


def test_dtype_mismatch_between_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = rejected(tmp_path, capsys, ids_dtype="INT32")
    assert (
        "step 'enc' input 'input_ids' expects INT64, but tensor 'input_ids' (output of step 'tok') is INT32"
        in err
    )


def test_dims_mismatch_between_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = rejected(tmp_path, capsys, hidden_dim=768)
    assert (
        "step 'pool' input 'hidden' expects dims [-1, 384], but tensor 'hidden' (output of step 'enc') "
        "has dims [-1, 768]" in err
    )


def test_dtype_mismatch_with_a_declared_ensemble_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = rejected(
        tmp_path, capsys, GOOD_ENSEMBLE.replace('Input("TEXT", "BYTES", [1])', 'Input("TEXT", "FP32", [1])')
    )
    assert "step 'tok' input 'TEXT' expects BYTES, but tensor 'TEXT' (ensemble input) is FP32" in err


def test_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The pooling output is renamed to the encoder's input: enc needs pool, which needs enc.
    ensemble = """
    ens = pbkit.Ensemble(
        "ens",
        steps=[Tok, pbkit.Step(Enc, inputs={"attention_mask": "loop"}), pbkit.Step(Pool, outputs={"embedding": "loop"})],
        inputs=[Input("TEXT", "BYTES", [1])],
    )
    """
    err = rejected(tmp_path, capsys, ensemble)
    assert "steps 'enc', 'pool' form a cycle" in err
    assert "step 'enc' waits for tensor 'loop' from step 'pool'" in err
    assert "step 'pool' waits for tensor 'hidden' from step 'enc'" in err


def test_declared_output_not_produced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = GOOD_ENSEMBLE.replace('pbkit.Step(Pool, outputs={"embedding": "EMBEDDING"})', "Pool")
    err = rejected(tmp_path, capsys, ensemble)
    assert "ensemble output 'EMBEDDING' is not produced by any step" in err


def test_declared_output_with_other_dims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = GOOD_ENSEMBLE.replace(
        'Output("EMBEDDING", "FP32", [384])', 'Output("EMBEDDING", "FP32", [768])'
    )
    err = rejected(tmp_path, capsys, ensemble)
    assert "ensemble output 'EMBEDDING' is declared FP32[768] but step 'pool' produces FP32[384]" in err


def test_step_batch_smaller_than_the_ensemble(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = GOOD_ENSEMBLE.replace('"ens",', '"ens", max_batch_size=8,')
    err = rejected(tmp_path, capsys, ensemble, enc_batch=4)
    assert "step 'enc' has max_batch_size 4, smaller than the ensemble's 8" in err


def test_non_batching_step_in_a_batching_ensemble(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = GOOD_ENSEMBLE.replace('"ens",', '"ens", max_batch_size=8,')
    err = rejected(tmp_path, capsys, ensemble, enc_batch=0)
    assert "step 'enc' does not batch (max_batch_size 0) but the ensemble has max_batch_size 8" in err


def test_batching_and_non_batching_steps_mixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Without an explicit max_batch_size the ensemble takes the smallest (0 here).
    err = rejected(tmp_path, capsys, tok_batch=0)
    assert "step 'enc' (max_batch_size 8) takes tensor 'input_ids' from step 'tok' (max_batch_size 0)" in err


def test_non_batching_ensemble_of_batching_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = GOOD_ENSEMBLE.replace('"ens",', '"ens", max_batch_size=0,')
    err = rejected(tmp_path, capsys, ensemble)
    assert "the ensemble has max_batch_size 0 but its steps batch (step 'tok' has max_batch_size 8)" in err


def test_two_steps_producing_one_tensor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ensemble = GOOD_ENSEMBLE.replace(
        'pbkit.Step(Pool, outputs={"embedding": "EMBEDDING"})',
        'pbkit.Step(Pool, outputs={"embedding": "hidden"})',
    )
    err = rejected(tmp_path, capsys, ensemble)
    assert "tensor 'hidden' is produced by both step 'enc' and step 'pool'" in err


def test_the_command_line_reports_the_error(tmp_path: Path) -> None:
    project = write_project(tmp_path, ids_dtype="INT32")
    result = subprocess.run(
        [sys.executable, "-m", "pbkit.cli.main", "build", str(project), "-o", str(tmp_path / "repo")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "decl.py" in result.stderr
    assert "step 'enc' input 'input_ids' expects INT64" in result.stderr
