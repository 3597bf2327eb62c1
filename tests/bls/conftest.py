"""Fixtures for the BLS tests: a fresh copy of tests/fixtures/bls_project and its modules."""

from __future__ import annotations

import importlib
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bls_project"
MODULES = ("bls_networks", "bls_submodels", "bls_orchestrators", "bls_export")


def copy_project(destination: Path) -> Path:
    """A copy of the BLS test project (without exports or caches) at ``destination``."""
    shutil.copytree(FIXTURE, destination, ignore=shutil.ignore_patterns("__pycache__", "exported"))
    return destination


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A writable copy of the BLS test project, so exports land in a temporary folder."""
    return copy_project(tmp_path / "bls_project")


@pytest.fixture
def bls(project: Path) -> Iterator[SimpleNamespace]:
    """The project's modules, imported from the copy (``bls.networks``, ``bls.submodels``, ...)."""
    saved = {name: sys.modules.pop(name) for name in MODULES if name in sys.modules}
    sys.path.insert(0, str(project))
    try:
        modules = {name.removeprefix("bls_"): importlib.import_module(name) for name in MODULES}
        yield SimpleNamespace(folder=project, **modules)
    finally:
        sys.path.remove(str(project))
        for name in MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


class FakeTrtexec:
    """A ``trtexec`` stand-in: records its arguments next to it and writes the engine file.

    Like the real one it fails (exit 3) when the ONNX file it is given does not exist.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "trtexec"
        self.path.write_text(
            f"#!{sys.executable}\n"
            "import pathlib, sys\n"
            "args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:] if '=' in a)\n"
            "pathlib.Path(__file__).with_name('argv.txt').write_text('\\n'.join(sys.argv[1:]))\n"
            "if not pathlib.Path(args['onnx']).is_file():\n"
            "    print('Failed to parse onnx file', args['onnx'])\n"
            "    sys.exit(3)\n"
            "pathlib.Path(args['saveEngine']).write_bytes(b'engine built from ' + args['onnx'].encode())\n"
        )
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def argv(self) -> list[str]:
        """The arguments of the last call."""
        return self.path.with_name("argv.txt").read_text().splitlines()


@pytest.fixture
def fake_trtexec(tmp_path: Path) -> FakeTrtexec:
    return FakeTrtexec(tmp_path / "fake_bin")
