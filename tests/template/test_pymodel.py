"""The ``pymodel`` cookiecutter template and ``pbkit new``.

The template is rendered with cookiecutter's API (no input) over several option combinations. Each
rendered project must be ruff-clean and pass its own generated tests; then all of them are built into one
repository and served by one real tritonserver, where each model is queried and each README example runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter
from packaging.requirements import Requirement

from pbkit.cli.main import main as pbkit_main
from pbkit.config.check import check_repository
from pbkit.testing.client import InferError
from pbkit.testing.server import TritonServer

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "pymodel"

#: Option combinations rendered in CI: every dtype family, dims with a variable axis, and each of
#: batching, torch and decoupled both on and off.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain_fp32": {},
    "torch_int8": {
        "dtype": "INT8",
        "dims": "3,-1",
        "use_torch": "yes",
        "batching": "no",
        "class_name": "Wrapper",
    },
    "stream_bytes": {
        "dtype": "BYTES",
        "dims": "1",
        "decoupled": "yes",
        "input_name": "TEXT",
        "output_name": "LOUD",
    },
    "torch_bool_stream": {
        "dtype": "BOOL",
        "dims": "2",
        "use_torch": "yes",
        "decoupled": "yes",
        "batching": "no",
    },
    "torch_fp16": {"dtype": "FP16", "dims": "2, 2", "use_torch": "yes"},
    "plain_uint8": {"dtype": "UINT8", "dims": "-1", "batching": "no", "decoupled": "yes"},
}
DEFAULTS = json.loads((TEMPLATE / "cookiecutter.json").read_text())


def answers(name: str) -> dict[str, Any]:
    """The variant's answers with the template's defaults filled in (booleans as bool)."""
    merged = {key: value for key, value in DEFAULTS.items() if not key.startswith("_")}
    merged["dtype"] = DEFAULTS["dtype"][0]
    merged.update(
        model_name=name,
        class_name=name.replace("_", " ").title().replace(" ", ""),
        input_name="INPUT",
        output_name="OUTPUT",
    )
    merged.update(VARIANTS[name])
    for key in ("batching", "use_torch", "decoupled"):
        value = merged[key]
        merged[key] = value if isinstance(value, bool) else value == "yes"
    return merged


def render(output_dir: Path, name: str) -> Path:
    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context={"model_name": name, **VARIANTS[name]},
            output_dir=str(output_dir),
            default_config=True,
        )
    )


def example_input(variant: dict[str, Any], rows: int = 2) -> np.ndarray:
    """A request's input for ``variant`` (a batch of ``rows`` when it batches), with edge values."""
    shape = tuple(3 if d == -1 else d for d in (int(x) for x in variant["dims"].split(",")))
    batch = (rows,) if variant["batching"] else ()
    count = int(np.prod(batch + shape))
    dtype = variant["dtype"]
    if dtype == "BYTES":
        words = [b"hello", "grüße".encode(), b"", b"MiXeD 42"]
        flat = np.array([words[i % len(words)] for i in range(count)], dtype=object)
    elif dtype == "BOOL":
        flat = np.arange(count) % 3 == 0
    elif dtype.startswith("FP"):
        flat = np.linspace(-2.5, 3.25, count).astype(
            {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[dtype]
        )
    else:
        info = np.iinfo(np.dtype(dtype.lower()))
        flat = np.linspace(info.min, info.max, count).astype(np.dtype(dtype.lower()))
    return flat.reshape(batch + shape)


def expected_output(variant: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """What the generated model computes, written out independently of the template's code."""
    dtype = variant["dtype"]
    if dtype == "BYTES":
        return np.array([v.decode().upper().encode() for v in values.reshape(-1)], dtype=object).reshape(
            values.shape
        )
    if dtype == "BOOL":
        return ~values
    if dtype.startswith("FP"):
        return values * 2
    bits = 8 * values.itemsize
    signed = np.dtype(dtype.lower()).kind == "i"
    flat = [(2 * int(v)) % 2**bits for v in values.reshape(-1)]
    flat = [v - 2**bits if signed and v >= 2 ** (bits - 1) else v for v in flat]
    return np.array(flat, dtype=values.dtype).reshape(values.shape)


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every variant rendered side by side in one folder."""
    root = tmp_path_factory.mktemp("pymodel") / "projects"
    root.mkdir()
    for name in VARIANTS:
        project = render(root, name)
        assert project == root / name
    return root


def test_expected_output_is_right() -> None:
    """The reference computation used below, on hand-checked values."""
    int8 = {"dtype": "INT8"}
    np.testing.assert_array_equal(
        expected_output(int8, np.array([-128, -65, 63, 64, 127], np.int8)), [0, 126, 126, -128, -2]
    )
    uint8 = {"dtype": "UINT8"}
    np.testing.assert_array_equal(
        expected_output(uint8, np.array([0, 127, 128, 255], np.uint8)), [0, 254, 0, 254]
    )
    np.testing.assert_array_equal(expected_output({"dtype": "BOOL"}, np.array([True, False])), [False, True])
    assert expected_output({"dtype": "BYTES"}, np.array([b"a\xc3\xa9"], dtype=object))[0] == b"A\xc3\x89"


# ------------------------------------------------------------------------------------------- rendering
def test_rendered_files(projects: Path) -> None:
    for name in VARIANTS:
        project = projects / name
        files = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
        assert files == sorted(
            [
                f"{name}.py",
                f"tests/test_{name}.py",
                "requirements.txt",
                "README.md",
                "pyproject.toml",
                ".gitignore",
            ]
            + [str(p.relative_to(project)) for p in (project / "tests").glob("conftest.py")]
        ), files
        assert not (project / "model.py").exists()
        text = "\n".join(p.read_text() for p in project.rglob("*") if p.is_file())
        assert "{{" not in text and "{%" not in text, f"{name}: unrendered template syntax"


def test_rendered_projects_are_ruff_clean(projects: Path) -> None:
    for args in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "--diff", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=projects, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_declarations_follow_the_answers(projects: Path) -> None:
    from pbkit.build import discover

    declared = {m.spec.name: m for m in discover(projects).models}
    assert sorted(declared) == sorted(VARIANTS)
    for name in VARIANTS:
        variant = answers(name)
        model = declared[name]
        spec = model.spec
        assert model.model_class.__name__ == variant["class_name"]
        dims = tuple(int(d) for d in variant["dims"].split(","))
        assert [(t.name, t.dtype.value, t.dims) for t in spec.inputs] == [
            (variant["input_name"], variant["dtype"], dims)
        ]
        assert [(t.name, t.dtype.value, t.dims) for t in spec.outputs] == [
            (variant["output_name"], variant["dtype"], dims)
        ]
        assert spec.max_batch_size == (8 if variant["batching"] else 0)
        assert (spec.dynamic_batching is not None) == variant["batching"]
        assert spec.decoupled == variant["decoupled"]
        source = (projects / name / f"{name}.py").read_text()
        assert ("import torch" in source) == variant["use_torch"]


def test_requirements_pin_what_the_image_installs(projects: Path) -> None:
    image_pins = {
        Requirement(line).name: Requirement(line)
        for line in (r.split("#", 1)[0].strip() for r in (ROOT / "requirements.txt").read_text().splitlines())
        if line
    }
    for name in VARIANTS:
        lines = [r.strip() for r in (projects / name / "requirements.txt").read_text().splitlines()]
        pins = [Requirement(line) for line in lines if line and not line.startswith("#")]
        assert {p.name for p in pins} == ({"numpy", "torch"} if answers(name)["use_torch"] else {"numpy"})
        for pin in pins:
            assert str(pin.specifier) == str(image_pins[pin.name].specifier), (
                f"{name}: {pin} vs the image's pin"
            )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"model_name": "model"}, "reserved"),
        ({"model_name": "json"}, "importable module"),
        ({"model_name": "My-Model"}, "lower-case"),
        ({"model_name": "ok_name", "class_name": "lower"}, "CamelCase"),
        ({"model_name": "ok_name", "input_name": "class"}, "input_name"),
        ({"model_name": "ok_name", "input_name": "X", "output_name": "X"}, "different names"),
        ({"model_name": "ok_name", "dims": "4,0"}, "dims"),
        ({"model_name": "ok_name", "dims": "four"}, "dims"),
        ({"model_name": "ok_name", "dtype": "BYTES", "use_torch": "yes"}, "torch has no string tensors"),
        ({"model_name": "ok_name", "description": 'say "hi"'}, "description"),
    ],
)
def test_bad_answers_are_rejected(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], bad: dict[str, str], message: str
) -> None:
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(TEMPLATE), no_input=True, extra_context=bad, output_dir=str(tmp_path), default_config=True
        )
    assert message in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- pbkit new
def test_pbkit_new_matches_the_template(tmp_path: Path, projects: Path) -> None:
    """``pbkit new`` with options renders exactly what cookiecutter renders with the same answers."""
    name = "torch_int8"
    options = ["--dtype", "INT8", "--dims", "3,-1", "--torch", "--no-batching", "--class-name", "Wrapper"]
    assert pbkit_main(["new", name, "-o", str(tmp_path), "--no-input", *options]) == 0
    made = {
        p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*") if p.is_file()
    }
    expected = {
        p.relative_to(projects / name): p.read_bytes() for p in (projects / name).rglob("*") if p.is_file()
    }
    assert made == expected


def test_pbkit_new_refuses_bad_answers_and_existing_folders(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert pbkit_main(["new", "conftest", "-o", str(tmp_path), "--no-input"]) == 1
    assert "reserved" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []

    assert pbkit_main(["new", "again", "-o", str(tmp_path), "--no-input"]) == 0
    assert "created" in capfd.readouterr().out
    assert pbkit_main(["new", "again", "-o", str(tmp_path), "--no-input", "--dtype", "INT64"]) == 1
    assert "already exists" in capfd.readouterr().err
    assert "FP32[4]" in (tmp_path / "again" / "again.py").read_text()
    assert pbkit_main(["new", "again", "-o", str(tmp_path), "--no-input", "--dtype", "INT64", "--force"]) == 0
    assert "INT64[4]" in (tmp_path / "again" / "again.py").read_text()


def test_pbkit_new_asks_nothing_without_a_terminal(tmp_path: Path) -> None:
    """Without ``--no-input`` and with no terminal on standard input, the defaults answer everything."""
    result = subprocess.run(
        [sys.executable, "-m", "pbkit.cli.main", "new", "quiet_model", "-o", str(tmp_path), "--decoupled"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    source = (tmp_path / "quiet_model" / "quiet_model.py").read_text()
    assert "class QuietModel:" in source and "FP32[4]" in source and "yield" in source


def test_installed_wheel_ships_the_template(tmp_path: Path) -> None:
    """A wheel of pbkit carries the template, so ``pbkit new`` works without the source tree."""
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(wheels),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("pbkit-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    shipped = {
        p.relative_to(target / "pbkit" / "_templates" / "pymodel")
        for p in (target / "pbkit" / "_templates" / "pymodel").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    in_tree = {
        p.relative_to(TEMPLATE) for p in TEMPLATE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped == in_tree
    # Run from the installed copy only (not the checkout): it finds its own template and renders it.
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import pbkit; assert pbkit.__file__.startswith(sys.argv[1]), pbkit.__file__; "
            "from pbkit.cli.main import main; raise SystemExit(main(['new', 'from_wheel', '--no-input']))",
            str(target),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (work / "from_wheel" / "from_wheel.py").is_file()


def test_new_project_api_checks_its_arguments(tmp_path: Path) -> None:
    from pbkit.cli.new import TemplateError, new_project

    with pytest.raises(TypeError, match="unknown template answers"):
        new_project("x_model", tmp_path, dtpye="FP32")
    with pytest.raises(TemplateError, match="boolean"):
        new_project("x_model", tmp_path, batching="maybe")
    project = new_project("x_model", tmp_path, batching=False, decoupled=True)
    assert "max_batch_size=0" in (project / "x_model.py").read_text()


def test_template_defaults_pin_the_repository_requirements() -> None:
    pins = {
        Requirement(line).name: Requirement(line)
        for line in (r.split("#", 1)[0].strip() for r in (ROOT / "requirements.txt").read_text().splitlines())
        if line
    }
    assert f"=={DEFAULTS['_numpy_version']}" == str(pins["numpy"].specifier)
    assert f"=={DEFAULTS['_torch_version']}" == str(pins["torch"].specifier)
    import pbkit

    assert DEFAULTS["_pbkit_version"] == pbkit.__version__


# ------------------------------------------------------------------------------------------- generated tests
def run_generated_tests(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def passed_count(output: str) -> int:
    summary = re.search(r"(\d+) passed", output)
    assert summary and not re.search(r"\d+ (failed|skipped|error)", output), output[-3000:]
    return int(summary.group(1))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_generated_tests_pass_in_process(projects: Path, name: str) -> None:
    result = run_generated_tests(projects / name, "-m", "not server")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert passed_count(result.stdout) >= 3


@pytest.mark.server
@pytest.mark.parametrize("name", ["torch_fp16", "stream_bytes"])
def test_generated_tests_pass_with_their_server_tests(projects: Path, name: str) -> None:
    """The whole generated suite, server tests included, as a user runs it (each run starts a server, so
    only one batching and one decoupled variant; every variant is served in the shared-server tests below)."""
    result = run_generated_tests(projects / name)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    deselected = re.search(r"(\d+) deselected", result.stdout)
    assert deselected is None, result.stdout[-2000:]
    assert passed_count(result.stdout) >= 7


# ------------------------------------------------------------------------------------------- real server
@pytest.fixture(scope="module")
def served(projects: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """All rendered variants built into one repository, on one tritonserver."""
    repository = tmp_path_factory.mktemp("pymodel_repository") / "models"
    assert pbkit_main(["build", str(projects), "-o", str(repository)]) == 0
    assert check_repository(repository) == []
    with TritonServer(repository) as server:
        yield server


@pytest.mark.server
@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_serves_on_tritonserver(served: TritonServer, name: str) -> None:
    variant = answers(name)
    assert served.is_model_ready(name)
    values = example_input(variant)
    want = expected_output(variant, values)
    if variant["decoupled"]:
        parts = list(served.stream(name, {variant["input_name"]: values}))
        assert len(parts) == 3
        for part in parts:
            np.testing.assert_array_equal(part[variant["output_name"]], want)
    else:
        for protocol in ("grpc", "http"):
            got = served.client(protocol).infer(name, {variant["input_name"]: values})
            np.testing.assert_array_equal(got[variant["output_name"]], want)
            assert got[variant["output_name"]].dtype == want.dtype


@pytest.mark.server
def test_validation_fails_only_the_bad_request(served: TritonServer) -> None:
    good = np.ones((1, 4), np.float32)
    with pytest.raises(InferError) as caught:
        served.infer("plain_fp32", {"INPUT": np.array([[1, np.nan, 2, 3]], np.float32)})
    assert caught.value.code == "INVALID_ARG" and "finite" in caught.value.message
    np.testing.assert_array_equal(served.infer("plain_fp32", {"INPUT": good})["OUTPUT"], good * 2)


@pytest.mark.server
@pytest.mark.parametrize("name", list(VARIANTS))
def test_readme_example_runs(served: TritonServer, projects: Path, name: str) -> None:
    readme = (projects / name / "README.md").read_text()
    (code,) = re.findall(r"## Query\n.*?```python\n(.*?)```", readme, flags=re.S)
    code = code.replace("127.0.0.1:8000", f"127.0.0.1:{served.http_port}").replace(
        "127.0.0.1:8001", f"127.0.0.1:{served.grpc_port}"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    variant = answers(name)
    shape = (1,) * variant["batching"] + tuple(
        3 if d == -1 else d for d in map(int, variant["dims"].split(","))
    )
    dtype = np.dtype(
        object if variant["dtype"] == "BYTES" else variant["dtype"].lower().replace("fp", "float")
    )
    values = (
        np.full(shape, b"hello", dtype=object) if variant["dtype"] == "BYTES" else np.ones(shape, dtype=dtype)
    )
    printed = str(expected_output(variant, values)) + "\n"
    assert result.stdout == printed * (3 if variant["decoupled"] else 1)
