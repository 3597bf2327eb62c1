"""The pytest plugin: its fixtures in a separate pytest run on a small project."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .repos import EXAMPLES

TESTS = """
import numpy as np


def test_add_sub(triton):
    a = np.arange(4, dtype=np.float32)
    out = triton.infer("add_sub", {"INPUT0": a, "INPUT1": a})
    assert out["OUTPUT0"].tolist() == (a * 2).tolist()


def test_local_only(local_triton, triton_repository):
    assert local_triton.repository == triton_repository
    assert local_triton.is_model_ready("add_sub")
"""


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A repository with only the add_sub example (quick to load)."""
    path = tmp_path / "repository"
    shutil.copytree(EXAMPLES / "add_sub", path / "add_sub")
    return path


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fixtures_with_the_ini_option(tmp_path: Path, repository: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\npbkit_repository = repository\n")
    (tmp_path / "test_models.py").write_text(TESTS)
    result = run_pytest(tmp_path, "-m", "not server", "-vv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_add_sub[local] PASSED" in result.stdout
    assert "test_local_only PASSED" in result.stdout
    assert "1 deselected" in result.stdout  # test_add_sub[server] carries the server marker


def test_repository_fixture_can_be_overridden(tmp_path: Path, repository: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            import pytest


            @pytest.fixture(scope="session")
            def triton_repository():
                return Path({str(repository)!r})
            """
        )
    )
    (tmp_path / "test_models.py").write_text(TESTS)
    result = run_pytest(tmp_path, "-m", "not server")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 1 deselected" in result.stdout


def test_missing_repository_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "test_models.py").write_text(TESTS)
    result = run_pytest(tmp_path, "-m", "not server")
    assert result.returncode != 0
    assert "no model repository: set `pbkit_repository" in result.stdout + result.stderr


@pytest.mark.server
def test_the_server_variant(tmp_path: Path, repository: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\npbkit_repository = repository\n")
    (tmp_path / "test_models.py").write_text(TESTS)
    result = run_pytest(tmp_path, "-m", "server", "-vv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_add_sub[server] PASSED" in result.stdout
