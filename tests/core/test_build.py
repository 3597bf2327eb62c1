"""``pbkit build``: generated files, hostile names and strings, symlinks, no pickle or eval."""

from __future__ import annotations

import ast
import os
import textwrap
from pathlib import Path

import pytest

import pbkit
from pbkit.build import BuildError, DiscoveryError, UnsafePathError, build
from pbkit.build.codegen import model_py
from pbkit.config import read_config
from pbkit.config.check import check_repository
from pbkit.spec.names import InvalidNameError

ROOT = Path(__file__).resolve().parents[2]


def project(tmp_path: Path, source: str, name: str = "proj", filename: str = "decl.py") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(textwrap.dedent(source))
    return folder


SIMPLE = """
    from typing import TypedDict
    import pbkit
    from pbkit import FP32

    class Out(TypedDict):
        Y: FP32[1]

    @pbkit.model(name={name!r}, max_batch_size=4, description={description!r},
                 parameters={{"note": {note!r}}})
    class M:
        def predict(self, X: FP32[1]) -> Out:
            return {{"Y": X}}
"""


def test_generated_model_py_is_short_and_plain(tmp_path: Path) -> None:
    src = project(tmp_path, SIMPLE.format(name="m", description="d", note="n"))
    build(src, tmp_path / "repo")
    text = (tmp_path / "repo" / "m" / "1" / "model.py").read_text()
    assert len(text.splitlines()) < 30
    assert "class TritonPythonModel(PbkitModel):" in text and "from decl import M" in text
    assert (tmp_path / "repo" / "m" / "1" / "decl.py").exists()
    assert (tmp_path / "repo" / "m" / "1" / "pbkit" / "runtime" / "batching.py").exists()


def test_hostile_strings_stay_data(tmp_path: Path) -> None:
    hostile = '"""\nimport os; os.system("echo pwned")\n"""} \x1b[31m ; rm -rf / \\n'
    src = project(tmp_path, SIMPLE.format(name="m", description=hostile, note=hostile))
    build(src, tmp_path / "repo")
    generated = (tmp_path / "repo" / "m" / "1" / "model.py").read_text()
    assert "pwned" not in generated
    ast.parse(generated)
    config = read_config(tmp_path / "repo" / "m" / "config.pbtxt")
    assert config.parameters["note"].string_value == hostile
    assert check_repository(tmp_path / "repo") == []


@pytest.mark.parametrize("name", ["../escape", "a/b", "x\ny", "..", "bad name", 'q"uote', "semi;colon"])
def test_unsafe_model_names_rejected(tmp_path: Path, name: str) -> None:
    src = project(tmp_path, SIMPLE.format(name=name, description="", note=""))
    with pytest.raises(DiscoveryError, match=r"not allowed|path separator|control characters"):
        build(src, tmp_path / "repo")
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("tensor", ["../X", "X\ty", "X; import os", "X'"])
def test_unsafe_tensor_names_rejected(tensor: str) -> None:
    with pytest.raises(InvalidNameError):
        pbkit.Input(tensor, "FP32", [1])


@pytest.mark.parametrize(
    ("module", "attribute"), [("os; import sys", "M"), ("decl", "M\nimport os"), ("decl", "__import__('os')")]
)
def test_codegen_refuses_code_in_names(module: str, attribute: str) -> None:
    with pytest.raises(InvalidNameError):
        model_py(model_name="m", module=module, attribute=attribute, version="0")


def test_output_symlink_not_followed(tmp_path: Path) -> None:
    src = project(tmp_path, SIMPLE.format(name="m", description="", note=""))
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink(outside, repo / "m")
    build(src, repo)
    assert not (repo / "m").is_symlink() and (repo / "m" / "config.pbtxt").exists()
    assert list(outside.iterdir()) == []


def test_output_folder_symlink_refused(tmp_path: Path) -> None:
    src = project(tmp_path, SIMPLE.format(name="m", description="", note=""))
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(UnsafePathError):
        build(src, tmp_path / "link")


def test_declaration_file_named_model_py_refused(tmp_path: Path) -> None:
    src = project(tmp_path, SIMPLE.format(name="m", description="", note=""), filename="model.py")
    with pytest.raises(BuildError, match="rename the declaration file"):
        build(src, tmp_path / "repo")


def test_duplicate_model_names_refused(tmp_path: Path) -> None:
    project(tmp_path / "models", SIMPLE.format(name="same", description="", note=""), name="a")
    project(tmp_path / "models", SIMPLE.format(name="same", description="", note=""), name="b")
    with pytest.raises(DiscoveryError, match="declared twice"):
        build(tmp_path / "models", tmp_path / "repo")


def test_projects_with_same_module_names_are_isolated(tmp_path: Path) -> None:
    for name, factor in (("one", 2), ("two", 3)):
        folder = tmp_path / "models" / name
        folder.mkdir(parents=True)
        (folder / "utils.py").write_text(f"FACTOR = {factor}\n")
        source = textwrap.dedent(SIMPLE.format(name=name, description="", note=""))
        (folder / "decl.py").write_text(source.replace("import pbkit\n", "import pbkit\nimport utils\n"))
    report = build(tmp_path / "models", tmp_path / "repo")
    assert sorted(m.name for m in report.models) == ["one", "two"]
    assert (tmp_path / "repo" / "two" / "1" / "utils.py").read_text() == "FACTOR = 3\n"


def test_runtime_has_no_pickle_or_eval() -> None:
    for folder in ("runtime", "spec"):
        for file in (ROOT / "pbkit" / folder).glob("*.py"):
            tree = ast.parse(file.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    assert not any(
                        n.split(".")[0] in ("pickle", "marshal", "dill", "cloudpickle") for n in names
                    ), file
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in ("eval", "exec", "compile"), f"{file}: {node.func.id}"


def test_core_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, pbkit, pbkit.config, pbkit.build, pbkit.cli.main; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
