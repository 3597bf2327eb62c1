"""Build security, beyond tests/core/test_build.py: property-based names and strings, the code that
ships to Triton, and symbolic links and ``--clean`` around the output folder.

* any string is either refused as a model, tensor or parameter name, or is a safe single folder
  name / config field that round-trips through ``config.pbtxt``;
* the generated ``model.py`` holds only a fixed structure whatever module and attribute names are
  asked for, and is byte-for-byte the same whatever hostile strings the declaration carries;
* hostile descriptions, parameter values and group names stay data: the config parses back to them;
* nothing that is shipped into a repository (the generated ``model.py`` and the vendored pbkit
  runtime) uses pickle, marshal, eval, exec, ``__import__`` or pickled numpy/torch loading;
* writes never go through symbolic links, and ``--clean`` removes only model folders and links.
"""

from __future__ import annotations

import ast
import os
import string
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pbkit
from pbkit.build import UnsafePathError, build
from pbkit.build.codegen import model_py
from pbkit.build.files import SafeTree
from pbkit.config import read_config
from pbkit.config.check import check_repository
from pbkit.config.generate import model_config, render
from pbkit.config.parse import parse_config
from pbkit.spec.declare import spec_of
from pbkit.spec.names import InvalidNameError

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
SAFE_MODEL_CHARS = set(string.ascii_letters + string.digits + "_.-")
SAFE_TENSOR_CHARS = SAFE_MODEL_CHARS | {":"}
#: Near-misses: valid names with one dangerous piece put in.
DANGEROUS_PIECES = (
    "/", "\\", "..", "\x00", "\n", "\r", "\t", "\x1b", "\x7f", " ", '"', "'", ";", "$(", "`", "{", "}",
    "#", "\u202e", "\u2028", "é", "%2e%2e", "~", "*", "\ufeff",
)  # fmt: skip


def names() -> st.SearchStrategy[str]:
    """Arbitrary text, and valid-looking names with a dangerous piece inserted."""
    valid = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,20}\Z")
    spliced = st.builds(
        lambda head, piece, tail: head + piece + tail,
        valid,
        st.sampled_from(DANGEROUS_PIECES),
        valid | st.just(""),
    )
    return st.one_of(st.text(max_size=40), spliced, valid)


def _declared(name: str = "m", **options: object) -> type:
    class Model:
        def predict(self, **inputs: object) -> dict[str, object]:
            return {"Y": next(iter(inputs.values()))}

    options.setdefault("inputs", [pbkit.Input("X", "FP32", [1])])
    return pbkit.model(name=name, max_batch_size=4, outputs=[pbkit.Output("Y", "FP32", [1])], **options)(  # type: ignore[arg-type]
        Model
    )


@SETTINGS
@given(name=names())
def test_model_names_are_refused_or_safe_folder_names(name: str) -> None:
    try:
        spec = spec_of(_declared(name))
    except (InvalidNameError, ValueError):
        assert (
            not (set(name) <= SAFE_MODEL_CHARS and 0 < len(name) <= 128 and ".." not in name)
            or name[0] in ".-_"
        )
        return
    if not name:  # no name: the class name, in snake case
        assert spec.name == "model"
        return
    assert spec.name == name
    assert set(name) <= SAFE_MODEL_CHARS and ".." not in name and name not in (".", "..")
    assert Path(name).parts == (name,) and not Path(name).is_absolute()
    assert parse_config(render(model_config(spec))).name == name
    generated = model_py(model_name=name, module="decl", attribute="Model", version="0")
    ast.parse(generated)
    assert generated.count(name) >= 1


@SETTINGS
@given(name=names())
def test_tensor_names_are_refused_or_round_trip(name: str) -> None:
    try:
        tensor = pbkit.Input(name, "FP32", [2])
    except InvalidNameError:
        assert not set(name) <= SAFE_TENSOR_CHARS or not name or not (name[0].isalpha() or name[0] == "_")
        return
    assert set(name) <= SAFE_TENSOR_CHARS
    spec = spec_of(_declared(inputs=[tensor]))
    config = parse_config(render(model_config(spec)))
    assert [t.name for t in config.input] == [name]


@SETTINGS
@given(key=names(), value=st.text(max_size=200))
def test_parameter_keys_are_refused_or_round_trip_with_any_value(key: str, value: str) -> None:
    try:
        spec = spec_of(_declared(parameters={key: value}))
    except InvalidNameError:
        assert not set(key) <= SAFE_MODEL_CHARS or not key or not (key[0].isalpha() or key[0] == "_")
        return
    config = parse_config(render(model_config(spec)))
    assert dict(config.parameters).keys() == {key} and config.parameters[key].string_value == value


@SETTINGS
@given(module=names(), attribute=st.one_of(names(), st.builds(lambda a, b: f"{a}.{b}", names(), names())))
def test_generated_model_py_cannot_be_injected(module: str, attribute: str) -> None:
    try:
        source = model_py(model_name="m", module=module, attribute=attribute, version="0")
    except InvalidNameError:
        return
    tree = ast.parse(source)
    body = tree.body
    # Docstring, two imports, sys.path.insert, the two pbkit imports, one class with one assignment.
    assert [type(node).__name__ for node in body] == [
        "Expr", "Import", "Import", "Expr", "ImportFrom", "ImportFrom", "ClassDef",
    ]  # fmt: skip
    assert body[4].module == "pbkit.runtime" and [a.name for a in body[4].names] == ["PbkitModel"]
    assert body[5].module == module and [a.name for a in body[5].names] == [attribute.split(".")[0]]
    klass = body[6]
    assert isinstance(klass, ast.ClassDef) and klass.name == "TritonPythonModel"
    assert len(klass.body) == 1 and isinstance(klass.body[0], ast.Assign)
    assert ast.unparse(klass.body[0].value) == attribute


HOSTILE_PROJECT = """
import numpy as np
import pbkit
from pbkit import FP32

HOSTILE = {hostile!r}


@pbkit.model(
    name="m",
    max_batch_size=4,
    outputs=[pbkit.Output("Y", "FP32", [1])],
    description=HOSTILE,
    parameters={{"note": HOSTILE, "other": HOSTILE[::-1]}},
    instances=pbkit.InstanceGroup(count=1, name=HOSTILE or "group"),
)
class M:
    {hostile!r}

    def predict(self, X: FP32[1]) -> dict[str, np.ndarray]:
        return {{"Y": X}}


ensemble = pbkit.Ensemble("e", steps=[M], description=HOSTILE)
"""


def _build_hostile(folder: Path, hostile: str) -> Path:
    project = folder / "proj"
    project.mkdir(parents=True)
    (project / "decl.py").write_text(HOSTILE_PROJECT.format(hostile=hostile), encoding="utf-8")
    build(project, folder / "repo")
    return folder / "repo"


@settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
@given(hostile=st.one_of(st.text(max_size=300), st.sampled_from(DANGEROUS_PIECES)))
def test_hostile_strings_stay_data(tmp_path_factory: pytest.TempPathFactory, hostile: str) -> None:
    reference = _build_hostile(tmp_path_factory.mktemp("plain"), "plain")
    repository = _build_hostile(tmp_path_factory.mktemp("hostile"), hostile)
    config = read_config(repository / "m" / "config.pbtxt")
    assert config.parameters["note"].string_value == hostile
    assert config.parameters["other"].string_value == hostile[::-1]
    assert config.instance_group[0].name == (hostile or "group")
    assert read_config(repository / "e" / "config.pbtxt").name == "e"
    assert check_repository(repository) == []
    generated = (repository / "m" / "1" / "model.py").read_bytes()
    assert generated == (reference / "m" / "1" / "model.py").read_bytes()


# --------------------------------------------------------------------------- what ships
FORBIDDEN_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "dill",
    "cloudpickle",
    "shelve",
    "jsonpickle",
    "joblib",
}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input"}


def _unsafe_constructs(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(str(node.module))
        elif isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name):
                name = function.id
            elif isinstance(function, ast.Attribute):
                # Methods named exec/compile (BLS's request.exec, re.compile) are fine; builtins' are not.
                base = ast.unparse(function.value)
                name = function.attr if base in ("builtins", "__builtins__") else f"{base}.{function.attr}"
            else:
                name = ""
            if name in FORBIDDEN_CALLS:
                found.append(f"call to {name}")
            keywords = {k.arg: k.value for k in node.keywords}
            pickled = keywords.get("allow_pickle")
            if isinstance(pickled, ast.Constant) and pickled.value is True:
                found.append("allow_pickle=True")
            if name == "torch.load" and "weights_only" not in keywords:
                found.append("torch.load without weights_only")
    return found


def test_shipped_runtime_has_no_pickle_or_eval(tmp_path: Path) -> None:
    repository = _build_hostile(tmp_path, "plain")
    version = repository / "m" / "1"
    shipped = [version / "model.py", *sorted((version / "pbkit").rglob("*.py"))]
    assert len(shipped) > 10, "the vendored runtime was found"
    problems = {str(path.relative_to(version)): _unsafe_constructs(path.read_text()) for path in shipped}
    assert {path: found for path, found in problems.items() if found} == {}
    # The scan itself finds what it looks for.
    assert _unsafe_constructs("import pickle\nnp.load(f, allow_pickle=True)\nbuiltins.eval('1')\ntorch.load(p)") == [
        "pickle", "allow_pickle=True", "call to eval", "torch.load without weights_only",
    ]  # fmt: skip


# --------------------------------------------------------------------------- symlinks and --clean
SIMPLE = textwrap.dedent(
    """
    import pbkit
    from pbkit import FP32

    @pbkit.model(name="m", max_batch_size=4, outputs=[pbkit.Output("Y", "FP32", [1])])
    class M:
        def predict(self, X: FP32[1]) -> dict:
            return {"Y": X}
    """
)


@pytest.fixture
def simple_project(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "decl.py").write_text(SIMPLE)
    return project


@pytest.mark.parametrize("link", ["m/1", "m/config.pbtxt", "m/1/pbkit", "m/1/model.py"])
def test_links_inside_a_model_folder_are_never_written_through(
    tmp_path: Path, simple_project: Path, link: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    repository = tmp_path / "repo"
    (repository / link).parent.mkdir(parents=True, exist_ok=True)
    target = outside if not link.endswith((".pbtxt", ".py")) else outside / "keep.txt"
    os.symlink(target, repository / link)
    build(simple_project, repository)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "keep"
    assert not (repository / link).is_symlink() and check_repository(repository) == []


def test_safe_tree_refuses_links_and_escapes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = SafeTree(tmp_path / "repo")
    os.symlink(outside, tree.root / "linked_dir")
    os.symlink(outside / "file.txt", tree.root / "linked_file")
    for relative in (
        "linked_dir/x.txt",
        "linked_file",
        "../escape.txt",
        "/abs/path.txt",
        "a/../../escape.txt",
    ):
        with pytest.raises(UnsafePathError):
            tree.write_text(relative, "data")
    with pytest.raises(UnsafePathError):
        tree.mkdir("linked_dir/sub")
    tree.remove("linked_dir")
    assert list(outside.iterdir()) == [] and not (tree.root / "linked_dir").exists()


def test_clean_keeps_everything_but_model_folders_and_links(tmp_path: Path, simple_project: Path) -> None:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "table.csv").write_text("1,2\n")
    (work / "notes.txt").write_text("mine")
    (work / "old_model").mkdir()
    (work / "old_model" / "config.pbtxt").write_text('name: "old_model"\n')
    outside = tmp_path / "outside_model"
    outside.mkdir()
    (outside / "config.pbtxt").write_text('name: "outside_model"\n')
    os.symlink(outside, work / "linked_model")
    os.symlink(simple_project, work / "proj")  # the sources, reachable from the output folder
    build(work / "proj", work, clean=True)
    assert sorted(p.name for p in work.iterdir()) == ["data", "m", "notes.txt"]
    assert (work / "notes.txt").read_text() == "mine" and (work / "data" / "table.csv").exists()
    assert (outside / "config.pbtxt").exists() and (simple_project / "decl.py").exists()
