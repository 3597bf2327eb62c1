"""``pbkit export`` end to end, then ``pbkit build --variant ...`` from what it wrote.

One export of the test project (module-scoped, a few seconds) feeds the build tests.
"""

from __future__ import annotations

import filecmp
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bls_helpers import FakeTrtexec, IsolatedModules, copy_project

from pbkit.cli.main import main
from pbkit.config import read_config
from pbkit.config.check import check_repository
from pbkit.export import trtexec_command


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with IsolatedModules():
        code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class Exported:
    """The project after ``pbkit export bls_export.py:towers`` with a stand-in trtexec on PATH."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.project = copy_project(root / "bls_project")
        self.repositories = root / "variants"
        self.trtexec = FakeTrtexec(root / "bin")
        monkeypatch.setenv("PATH", f"{self.trtexec.path.parent}:{Path(sys.executable).parent}")
        with IsolatedModules():
            self.code = main(
                [
                    "export",
                    f"{self.project / 'bls_export.py'}:towers",
                    "--repositories",
                    str(self.repositories),
                    "--exporter",
                    "torchscript",  # the faster exporter; the default one is tested in test_export_onnx.py
                ]
            )

    def file(self, name: str) -> Path:
        return self.project / "exported" / name


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield Exported(tmp_path_factory.mktemp("export"), monkeypatch)


def test_export_writes_every_variant_to_the_declared_paths(exported: Exported) -> None:
    assert exported.code == 0
    for name in ("bls_encoder", "bls_projector"):
        for suffix in (".onnx", ".pt", ".plan"):
            assert exported.file(name + suffix).is_file(), name + suffix
    assert exported.file("bls_projector.plan").read_bytes() == (
        b"engine built from " + str(exported.file("bls_projector.onnx")).encode()
    )
    assert exported.trtexec.argv()[-4:] == [  # the projector, built last, with the factory's opt shape
        "--minShapes=features:1x4",
        "--optShapes=features:4x4",
        "--maxShapes=features:8x4",
        "--fp16",
    ]


@pytest.mark.parametrize(
    ("kind", "platform", "filename"),
    [
        ("onnx", "onnxruntime_onnx", "model.onnx"),
        ("torchscript", "pytorch_libtorch", "model.pt"),
        ("tensorrt", "tensorrt_plan", "model.plan"),
    ],
)
def test_pbkit_check_accepts_each_variant_repository(
    exported: Exported, kind: str, platform: str, filename: str
) -> None:
    repository = exported.repositories / kind
    assert check_repository(repository) == []
    for name in ("bls_encoder", "bls_projector"):
        config = read_config(repository / name / "config.pbtxt")
        assert (config.name, config.platform, config.default_model_filename) == (name, platform, filename)
        assert config.max_batch_size == 8 and config.input[0].name == "features"
        assert (repository / name / "1" / filename).is_file()


def test_build_with_each_file_variant(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repositories = {}
    for variant in ("python", "onnx", "torchscript", "tensorrt"):
        repository = tmp_path / variant
        code, _, err = run_cli(
            capsys, "build", str(exported.project), "-o", str(repository), "--variant", variant
        )
        assert code == 0, err
        assert check_repository(repository) == []
        repositories[variant] = repository
    assert read_config(repositories["onnx"] / "bls_encoder" / "config.pbtxt").platform == "onnxruntime_onnx"
    assert filecmp.cmp(
        exported.file("bls_encoder.onnx"), repositories["onnx"] / "bls_encoder/1/model.onnx", False
    )
    assert (
        read_config(repositories["torchscript"] / "bls_projector" / "config.pbtxt").platform
        == "pytorch_libtorch"
    )
    assert (repositories["tensorrt"] / "bls_projector" / "1" / "model.plan").is_file()
    assert read_config(repositories["python"] / "bls_encoder" / "config.pbtxt").backend == "python"
    for variant in ("onnx", "torchscript", "tensorrt"):
        # bls_counter declares only a Python variant, so it keeps it
        assert read_config(repositories[variant] / "bls_counter" / "config.pbtxt").backend == "python"
        # the orchestrators are byte-for-byte the same whatever the submodels' variant
        for orchestrator in ("bls_two_tower", "bls_sequential", "bls_count_sum"):
            comparison = filecmp.dircmp(
                repositories["python"] / orchestrator, repositories[variant] / orchestrator
            )
            assert _identical(comparison), (variant, orchestrator)


def _identical(comparison: filecmp.dircmp[str]) -> bool:
    if comparison.left_only or comparison.right_only or comparison.diff_files or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(
        comparison.left, comparison.right, comparison.common_files, shallow=False
    )
    return not mismatch and not errors and all(_identical(sub) for sub in comparison.subdirs.values())


def test_priority_list_falls_back_in_order(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(
        capsys,
        "build",
        str(exported.project),
        "-o",
        str(tmp_path / "r"),
        "--variant",
        "onnx",
        "--variant",
        "python",
    )
    assert code == 0
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in out.splitlines()[1:]}
    assert lines["bls_encoder"] == "onnx" and lines["bls_projector"] == "onnx"
    assert lines["bls_counter"] == "python variant"


def test_without_variant_each_submodel_takes_its_first_declared_variant_that_exists(
    exported: Exported, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = {}
    for label, folder in (("exported", exported.project), ("fresh", project)):
        code, out, err = run_cli(capsys, "build", str(folder), "-o", str(tmp_path / label))
        assert code == 0, err
        chosen[label] = {line.split()[0]: line.split(maxsplit=1)[1] for line in out.splitlines()[1:]}
    # declared order: TensorRT, ONNX, TorchScript, Python
    assert chosen["exported"]["bls_encoder"] == chosen["exported"]["bls_projector"] == "tensorrt"
    assert chosen["fresh"]["bls_encoder"] == chosen["fresh"]["bls_projector"] == "python variant"


def test_export_without_tensorrt_prints_the_command(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    code, out, err = run_cli(
        capsys,
        "export",
        f"{project / 'bls_export.py'}:projector_target",
        "-o",
        str(tmp_path / "out"),
        "--no-repositories",
        "--max-shape",
        "features=6x4",
        "--exporter",
        "torchscript",
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bls_projector.onnx", "bls_projector.pt"]
    with IsolatedModules():
        sys.path.insert(0, str(project))
        try:
            from bls_submodels import projector
        finally:
            sys.path.remove(str(project))
    expected = trtexec_command(
        projector,
        tmp_path / "out" / "bls_projector.onnx",
        plan_path=tmp_path / "out" / "bls_projector.plan",
        opt_shapes={"features": (4, 4)},
        max_shapes={"features": (6, 4)},
    )
    assert f"not built here; on a GPU machine run:\n    {expected}\n" in out
    assert "--maxShapes=features:6x4" in expected


def test_building_a_missing_file_variant_names_the_file(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "build", str(project), "-o", str(tmp_path / "r"), "--variant", "tensorrt")
    assert code == 1
    assert "bls_encoder" in err and "bls_encoder.plan" in err and "pbkit export" in err


def test_export_can_require_a_plan(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    code, _, err = run_cli(
        capsys,
        "export",
        f"{project / 'bls_export.py'}:projector_target",
        "--format",
        "tensorrt",
        "--plan",
        "build",
        "--exporter",
        "torchscript",
        "--no-repositories",
    )
    assert code == 1 and "TensorRT is not available here" in err and "trtexec --onnx=" in err


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon", "expected MODULE:FACTORY"),
        ("{project}/bls_export.py:nothing", "has no function 'nothing'"),
        ("{project}/missing.py:towers", "missing.py: no such file"),
        (
            "{project}/bls_submodels.py:_check_finite",
            "_check_finite raised TypeError: _check_finite() missing 1",
        ),
    ],
)
def test_bad_factory_references(
    project: Path, capsys: pytest.CaptureFixture[str], reference: str, message: str
) -> None:
    code, _, err = run_cli(capsys, "export", reference.format(project=project))
    assert code == 1 and message in err


def test_factory_returning_something_else(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "factories.py").write_text("def nothing_useful():\n    return 42\n")
    code, _, err = run_cli(capsys, "export", f"{tmp_path / 'factories.py'}:nothing_useful")
    assert code == 1 and "returned int; return an ExportTarget" in err


def test_a_parity_failure_fails_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flip.py").write_text(
        "import torch\n"
        "import pbkit\n"
        "from pbkit.export import ExportTarget\n\n"
        "FLIP = pbkit.Submodel('flip', inputs=[pbkit.Input('x', 'FP32', [2])],"
        " outputs=[pbkit.Output('y', 'FP32', [2])], max_batch_size=2)\n\n"
        "class Flip(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x * 2 if bool(x.sum() > 0) else -x\n\n"
        "def target():\n"
        "    return ExportTarget(Flip(), FLIP, {'x': torch.ones(1, 2)}, check_inputs=[{'x': -torch.ones(1, 2)}])\n"
    )
    code, out, _ = run_cli(
        capsys,
        "export",
        f"{tmp_path / 'flip.py'}:target",
        "-o",
        str(tmp_path / "out"),
        "--format",
        "torchscript",
        "--repositories",
        str(tmp_path / "variants"),
    )
    assert code == 1
    assert "FAILED" in out and "check_inputs[0]" in out


def test_shape_flags_are_parsed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "export", f"{project / 'bls_export.py'}:towers", "--min-shape", "features:1x4"
    )
    assert code == 1 and "expected INPUT=AxBxC" in err


def test_help_documents_the_factory_contract(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "MODULE:FACTORY" in out and "ExportTarget" in out and "trtexec" in out and "atol + rtol" in out
