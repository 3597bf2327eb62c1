"""Fixtures for the BLS tests: a fresh copy of tests/fixtures/bls_project and its modules."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from bls_helpers import FakeTrtexec

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


@pytest.fixture
def fake_trtexec(tmp_path: Path) -> FakeTrtexec:
    return FakeTrtexec(tmp_path / "fake_bin")
