"""Find the declarations in a models folder.

A *project* is a folder of Python files (``models/whisper/``). Its files are imported as
top-level modules with the folder on ``sys.path``, exactly as they import inside Triton,
where they are copied next to the generated ``model.py``. Each project is imported in
isolation, so two projects may both have a ``utils.py``.

Only files that mention ``pbkit`` are imported; test files (``test_*.py``, ``conftest.py``)
and folders named ``tests`` are skipped.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.declare import is_model_class, spec_of
from ..spec.ensemble import Ensemble
from ..spec.model import ModelSpec
from ..spec.submodel import Submodel

SKIPPED_DIRS = {"tests", "test", "__pycache__", "node_modules"}


class DiscoveryError(Exception):
    """A declaration file could not be imported or declares conflicting models."""


@dataclass
class DeclaredModel:
    """A ``@pbkit.model`` class and where it came from."""

    model_class: type
    module: str
    attribute: str
    project: Path

    @property
    def spec(self) -> ModelSpec:
        return spec_of(self.model_class)


@dataclass
class DeclaredSubmodel:
    """A ``Submodel`` and the import path that reaches it (``module``, ``attr.attr``)."""

    submodel: Submodel
    module: str
    attribute: str
    project: Path


@dataclass
class DeclaredEnsemble:
    ensemble: Ensemble
    project: Path


@dataclass
class Declarations:
    models: list[DeclaredModel] = field(default_factory=list)
    submodels: list[DeclaredSubmodel] = field(default_factory=list)
    ensembles: list[DeclaredEnsemble] = field(default_factory=list)

    def names(self) -> list[str]:
        return (
            [m.spec.name for m in self.models]
            + [s.submodel.name for s in self.submodels if s.submodel.variants]
            + [e.ensemble.name for e in self.ensembles]
        )


def project_dirs(path: Path) -> list[Path]:
    """The projects under ``path``: itself if it holds Python files, and its subfolders that do."""
    path = Path(path)
    if path.is_file():
        return [path.parent]
    projects = []
    if any(_declaration_files(path)):
        projects.append(path)
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name not in SKIPPED_DIRS and not child.name.startswith((".", "_")):
            if any(_declaration_files(child)):
                projects.append(child)
    return projects


def _declaration_files(project: Path) -> Iterator[Path]:
    for file in sorted(project.glob("*.py")):
        if file.name.startswith("test_") or file.name in ("conftest.py", "setup.py"):
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "pbkit" in text:
            yield file


def discover(path: str | Path) -> Declarations:
    """Import every project under ``path`` and collect its models, submodels and ensembles."""
    declarations = Declarations()
    for project in project_dirs(Path(path)):
        _discover_project(project.resolve(), declarations)
    _check_unique(declarations)
    return declarations


def _discover_project(project: Path, declarations: Declarations) -> None:
    local_names = {f.stem for f in project.glob("*.py")} | {
        d.name for d in project.iterdir() if d.is_dir() and (d / "__init__.py").exists()
    }
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] in local_names}
    sys.path.insert(0, str(project))
    seen_submodels = {id(s.submodel) for s in declarations.submodels}
    try:
        for file in _declaration_files(project):
            try:
                module = importlib.import_module(file.stem)
            except Exception as exc:
                raise DiscoveryError(f"{file}: import failed: {type(exc).__name__}: {exc}") from exc
            for attribute, value in list(vars(module).items()):
                if is_model_class(value) and value.__module__ == module.__name__:
                    declarations.models.append(DeclaredModel(value, module.__name__, attribute, project))
                    for sub_attr, sub in vars(value).items():
                        if isinstance(sub, Submodel) and id(sub) not in seen_submodels:
                            seen_submodels.add(id(sub))
                            declarations.submodels.append(
                                DeclaredSubmodel(sub, module.__name__, f"{attribute}.{sub_attr}", project)
                            )
                elif isinstance(value, Ensemble):
                    if all(e.ensemble is not value for e in declarations.ensembles):
                        declarations.ensembles.append(DeclaredEnsemble(value, project))
            for attribute, value in list(vars(module).items()):
                if isinstance(value, Submodel) and id(value) not in seen_submodels:
                    seen_submodels.add(id(value))
                    declarations.submodels.append(
                        DeclaredSubmodel(value, module.__name__, attribute, project)
                    )
    finally:
        sys.path.remove(str(project))
        for name in list(sys.modules):
            if name.split(".")[0] in local_names:
                del sys.modules[name]
        sys.modules.update(saved)


def _check_unique(declarations: Declarations) -> None:
    seen: dict[str, str] = {}
    for model in declarations.models:
        _claim(seen, model.spec.name, f"{model.project / model.module}.py:{model.attribute}")
    for sub in declarations.submodels:
        if sub.submodel.variants:
            _claim(seen, sub.submodel.name, f"{sub.project / sub.module}.py:{sub.attribute}")
    for ens in declarations.ensembles:
        _claim(seen, ens.ensemble.name, f"ensemble in {ens.project}")


def _claim(seen: dict[str, str], name: str, where: str) -> None:
    if name in seen:
        raise DiscoveryError(f"model name '{name}' is declared twice: {seen[name]} and {where}")
    seen[name] = where


def resolve_attribute(module: Any, dotted: str) -> Any:
    value = module
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
