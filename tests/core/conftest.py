"""Shared helpers: import the core test project's declarations."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

CORE_PROJECT = Path(__file__).resolve().parents[1] / "fixtures" / "core_project"


@pytest.fixture(scope="session")
def core_models():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(CORE_PROJECT))
    try:
        return importlib.import_module("core_models")
    finally:
        sys.path.remove(str(CORE_PROJECT))
