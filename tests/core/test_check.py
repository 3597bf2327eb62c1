"""``pbkit check`` rejects broken repositories with messages naming the file and the field."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pbkit.build import build
from pbkit.cli.main import main
from pbkit.config.check import check_repository

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"

ENSEMBLE = """
name: "pipe"
platform: "ensemble"
max_batch_size: 8
input { name: "A" data_type: TYPE_FP32 dims: 4 }
input { name: "B" data_type: TYPE_FP32 dims: 4 }
output { name: "OUT" data_type: TYPE_FP32 dims: 4 }
ensemble_scheduling { step [
  { model_name: "add_sub" model_version: -1
    input_map { key: "A" value: "A" } input_map { key: "B" value: "B" }
    output_map { key: "SUM" value: "OUT" } }
] }
"""


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    build(DEMO, tmp_path / "repo")
    (tmp_path / "repo" / "pipe" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "pipe" / "config.pbtxt").write_text(ENSEMBLE)
    assert check_repository(tmp_path / "repo") == []
    return tmp_path / "repo"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def cfg(repo: Path, model: str = "add_sub") -> Path:
    return repo / model / "config.pbtxt"


BREAKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "syntax": (
        lambda r: edit(cfg(r), 'name: "add_sub"', 'name: "add_sub" bogus_field: 1'),
        "add_sub/config.pbtxt: schema",
    ),
    "bad_dtype": (lambda r: edit(cfg(r), "TYPE_FP32", "TYPE_FLOAT"), "add_sub/config.pbtxt: schema"),
    "name_mismatch": (
        lambda r: edit(cfg(r), 'name: "add_sub"', 'name: "other"'),
        "add_sub/config.pbtxt: name",
    ),
    "no_dims_unbatched": (
        lambda r: cfg(r).write_text(
            'name: "add_sub" backend: "python" max_batch_size: 0 '
            'input { name: "A" data_type: TYPE_FP32 } output { name: "SUM" data_type: TYPE_FP32 dims: 4 }'
        ),
        "add_sub/config.pbtxt: input[0].dims: is empty",
    ),
    "zero_dim": (lambda r: edit(cfg(r), "dims: 4", "dims: 0"), "add_sub/config.pbtxt: input[0].dims[0]"),
    "dynamic_without_batch": (
        lambda r: edit(cfg(r), "max_batch_size: 8", "max_batch_size: 0"),
        "add_sub/config.pbtxt: dynamic_batching",
    ),
    "preferred_too_big": (
        lambda r: edit(cfg(r), "dynamic_batching {", "dynamic_batching {\n  preferred_batch_size: 64"),
        "add_sub/config.pbtxt: dynamic_batching.preferred_batch_size",
    ),
    "missing_config": (lambda r: cfg(r).unlink(), "add_sub/config.pbtxt: missing"),
    "missing_model_file": (
        lambda r: (r / "add_sub" / "1" / "model.py").unlink(),
        "add_sub/1/model.py: missing",
    ),
    "no_version_folder": (lambda r: shutil.rmtree(r / "add_sub" / "1"), "add_sub: version folders"),
    "no_triton_python_model": (
        lambda r: (r / "add_sub" / "1" / "model.py").write_text("class Model:\n    pass\n"),
        "add_sub/1/model.py: TritonPythonModel",
    ),
    "python_syntax_error": (
        lambda r: (r / "add_sub" / "1" / "model.py").write_text("def broken(:\n"),
        "add_sub/1/model.py: line 1",
    ),
    "unsafe_folder_name": (lambda r: (r / "bad name;rm").mkdir(), "bad name;rm: model folder name"),
    "duplicate_input": (
        lambda r: edit(cfg(r), 'name: "B"', 'name: "A"'),
        "add_sub/config.pbtxt: input[1].name",
    ),
    "unsafe_tensor_name": (
        lambda r: edit(cfg(r), 'name: "B"', 'name: "../B"'),
        "add_sub/config.pbtxt: input[1].name",
    ),
    "ensemble_unknown_model": (
        lambda r: edit(cfg(r, "pipe"), 'model_name: "add_sub"', 'model_name: "ghost"'),
        "pipe/config.pbtxt: ensemble_scheduling.step[0].model_name",
    ),
    "ensemble_unknown_tensor": (
        lambda r: edit(cfg(r, "pipe"), 'output_map { key: "SUM"', 'output_map { key: "TOTAL"'),
        "pipe/config.pbtxt: ensemble_scheduling.step[0].output_map['TOTAL']",
    ),
    "ensemble_output_not_produced": (
        lambda r: edit(cfg(r, "pipe"), 'value: "OUT"', 'value: "ELSE"'),
        "pipe/config.pbtxt: output[0]",
    ),
    "ensemble_unmapped_input": (
        lambda r: edit(cfg(r, "pipe"), 'input_map { key: "B" value: "B" }', ""),
        "pipe/config.pbtxt: ensemble_scheduling.step[0].input_map",
    ),
    "gpus_on_cpu": (
        lambda r: edit(
            cfg(r), "dynamic_batching {", "instance_group { kind: KIND_CPU gpus: 0 }\ndynamic_batching {"
        ),
        "add_sub/config.pbtxt: instance_group[0].gpus",
    ),
    "specific_version_missing": (
        lambda r: edit(
            cfg(r), "dynamic_batching {", "version_policy { specific { versions: 3 } }\ndynamic_batching {"
        ),
        "add_sub/config.pbtxt: version_policy.specific.versions",
    ),
}


@pytest.mark.parametrize("kind", sorted(BREAKAGES))
def test_broken_repository_rejected(repo: Path, kind: str) -> None:
    breakage, expected = BREAKAGES[kind]
    breakage(repo)
    problems = [str(p) for p in check_repository(repo)]
    assert any(p.startswith(expected) for p in problems), problems


def test_cli_exit_codes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(repo)]) == 0
    edit(cfg(repo), "dims: 4", "dims: -2")
    assert main(["check", str(repo)]) == 1
    assert "add_sub/config.pbtxt: input[0].dims[0]: must be positive or -1, got -2" in capsys.readouterr().out


def test_symlinked_model_folder_flagged(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(repo / "upper", outside)
    os.symlink(outside, repo / "linked")
    edit(outside / "config.pbtxt", 'name: "upper"', 'name: "linked"')
    assert any("symbolic link" in str(p) for p in check_repository(repo))
