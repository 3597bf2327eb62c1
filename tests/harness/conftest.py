"""Fixtures for the harness tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .repos import ModelWriter, write_model


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty model repository."""
    path = tmp_path / "repository"
    path.mkdir()
    return path


@pytest.fixture
def model(repo: Path) -> ModelWriter:
    """``model(name, config, code, ...)`` writes a model into ``repo``."""

    def write(name: str, config: str, code: str | None, **kwargs: object) -> Path:
        return write_model(repo, name, config, code, **kwargs)  # type: ignore[arg-type]

    return write
