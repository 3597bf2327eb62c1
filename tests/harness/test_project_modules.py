"""ProjectModules: two projects with same-named helper modules, tested in one session."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from pbkit.testing import ProjectModules


def write_project(folder: Path, word: str) -> Path:
    folder.mkdir()
    (folder / "common.py").write_text(f"WORD = {word!r}\n")
    (folder / "helpers.py").write_text("from common import WORD\n\ndef shout():\n    return WORD.upper()\n")
    (folder / "lazy.py").write_text("import common\n\nWHERE = common.WORD\n")
    return folder


def test_same_named_modules_of_two_projects_stay_apart(tmp_path: Path) -> None:
    before = dict(sys.modules)
    first = ProjectModules(write_project(tmp_path / "a", "alpha"), ["common", "helpers"])
    second = ProjectModules(write_project(tmp_path / "b", "beta"), ["common", "helpers"])
    assert first.helpers.shout() == "ALPHA" and second["helpers"].shout() == "BETA"
    assert first.common is not second.common
    # nothing of either project is left importable by name
    assert "common" not in sys.modules and "helpers" not in sys.modules
    assert set(sys.modules) - set(before) == set()


def test_importable_gives_the_same_modules_and_forgets_lazy_imports(tmp_path: Path) -> None:
    project = ProjectModules(write_project(tmp_path / "a", "alpha"), ["common", "helpers"])
    sys.modules["common"] = marker = type(sys)("common")  # someone else's module under the same name
    try:
        with project.importable():
            assert importlib.import_module("common") is project.common
            assert importlib.import_module("lazy").WHERE == "alpha"  # a module not listed, imported lazily
        assert sys.modules["common"] is marker and "lazy" not in sys.modules
        assert str(project.folder) not in sys.path
    finally:
        sys.modules.pop("common", None)


def test_unknown_module_names_are_reported(tmp_path: Path) -> None:
    project = ProjectModules(write_project(tmp_path / "a", "alpha"), ["common"])
    with pytest.raises(AttributeError, match="'helpers' is not one of the modules"):
        _ = project.helpers
    with pytest.raises(ModuleNotFoundError):
        ProjectModules(tmp_path / "a", ["missing"])
