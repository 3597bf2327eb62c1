"""Fixtures for the BLS tests: a fresh copy of tests/fixtures/bls_project and its modules."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from bls_helpers import PROJECT_MODULES, FakeTrtexec, IsolatedModules, copy_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A writable copy of the BLS test project, so exports land in a temporary folder."""
    return copy_project(tmp_path / "bls_project")


@pytest.fixture
def bls(project: Path) -> Iterator[SimpleNamespace]:
    """The project's modules, imported from the copy (``bls.networks``, ``bls.submodels``, ...)."""
    with IsolatedModules():
        sys.path.insert(0, str(project))
        try:
            modules = {name.removeprefix("bls_"): importlib.import_module(name) for name in PROJECT_MODULES}
            yield SimpleNamespace(folder=project, **modules)
        finally:
            sys.path.remove(str(project))


@pytest.fixture
def fake_trtexec(tmp_path: Path) -> FakeTrtexec:
    return FakeTrtexec(tmp_path / "fake_bin")
