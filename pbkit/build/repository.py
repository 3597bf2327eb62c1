"""``pbkit build``: write a standard Triton model repository from declarations.

For every pbkit model the repository gets::

    <name>/config.pbtxt          rendered through model_config_pb2
    <name>/1/model.py            a short generated entry point
    <name>/1/pbkit/              the vendored runtime (numpy + pb_utils only)
    <name>/1/*.py, extra files   the project's sources, copied as they are

Submodels get the variant chosen for them (a file such as ``model.onnx`` for ONNX, or a
generated Python model), and ensembles get their config and an empty version folder.
Nothing is pickled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pbkit

from ..config.generate import ensemble_config, model_config, render
from ..spec.model import ModelSpec
from ..spec.submodel import VARIANT_KINDS, FileVariant, PythonVariant, Submodel, Variant
from .codegen import model_py
from .discover import SKIPPED_DIRS, Declarations, DeclaredModel, DeclaredSubmodel, discover
from .files import SafeTree

RUNTIME_PACKAGES = ("spec", "runtime")


class BuildError(Exception):
    """The declarations cannot be built into a repository."""


@dataclass
class BuiltModel:
    name: str
    kind: str  # "python", "ensemble", or a variant kind
    path: Path


@dataclass
class BuildReport:
    repository: Path
    models: list[BuiltModel] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"wrote {len(self.models)} model(s) to {self.repository}"]
        lines += [f"  {m.name:<32} {m.kind}" for m in self.models]
        return "\n".join(lines)


def build(
    source: str | Path,
    output: str | Path,
    *,
    variant: str | Sequence[str] | None = None,
    clean: bool = False,
) -> BuildReport:
    """Build every declaration under ``source`` into the repository ``output``.

    ``variant`` (a kind or a priority list) chooses how submodels are served; a submodel
    that declares the first preferred kind must have its files, others fall back to their
    own priority order. ``clean`` first removes the output's model folders (see :func:`_clean`).
    """
    preference = [variant] if isinstance(variant, str) else list(variant or [])
    for kind in preference:
        if kind not in VARIANT_KINDS:
            raise BuildError(f"unknown variant {kind!r}; expected one of {', '.join(VARIANT_KINDS)}")
    declarations = discover(source)
    if not declarations.names():
        raise BuildError(f"no pbkit models found under {source}")
    tree = SafeTree(output)
    if clean:
        _clean(tree)
    report = BuildReport(tree.root)
    for declared in declarations.models:
        report.models.append(
            _build_python_model(tree, declared.spec, declared.project, declared.module, declared.attribute)
        )
    for declared_sub in declarations.submodels:
        if declared_sub.submodel.variants:
            report.models.append(_build_submodel(tree, declared_sub, preference))
    for declared_ens in declarations.ensembles:
        ensemble = declared_ens.ensemble
        _reset_model_dir(tree, ensemble.name)
        tree.write_text(f"{ensemble.name}/config.pbtxt", render(ensemble_config(ensemble)))
        tree.mkdir(f"{ensemble.name}/1")
        report.models.append(BuiltModel(ensemble.name, "ensemble", tree.root / ensemble.name))
    _check_references(declarations, report)
    return report


def _clean(tree: SafeTree) -> None:
    """Remove what a build writes at the top of a repository: model folders (folders holding a
    ``config.pbtxt``) and symbolic links (the links only). Anything else is left alone, so that an
    output path given by mistake (``-o .``, the sources' folder) cannot delete other files."""
    for entry in sorted(tree.root.iterdir()):
        if entry.is_symlink() or (entry.is_dir() and (entry / "config.pbtxt").is_file()):
            tree.remove(entry.name)


def _reset_model_dir(tree: SafeTree, name: str) -> None:
    tree.remove(name)
    tree.mkdir(name)


def _build_python_model(
    tree: SafeTree,
    spec: ModelSpec,
    project: Path,
    module: str,
    attribute: str,
    *,
    python_variant: bool = False,
) -> BuiltModel:
    if module == "model":
        raise BuildError(
            f"{project / 'model.py'}: pbkit writes its own model.py; rename the declaration file "
            f"(for example to {spec.name}.py)"
        )
    name = spec.name
    _reset_model_dir(tree, name)
    version_dir = f"{name}/{spec.version}"
    tree.write_text(f"{name}/config.pbtxt", render(model_config(spec)))
    _copy_project(tree, project, version_dir)
    _vendor_runtime(tree, version_dir)
    for extra in spec.extra_files:
        _copy_extra(tree, project, extra, version_dir, name)
    tree.write_text(
        f"{version_dir}/model.py",
        model_py(
            model_name=name,
            module=module,
            attribute=attribute,
            version=pbkit.__version__,
            python_variant=python_variant,
        ),
    )
    return BuiltModel(name, "python", tree.root / name)


def _copy_project(tree: SafeTree, project: Path, version_dir: str) -> None:
    for entry in sorted(project.iterdir()):
        if entry.name.startswith((".", "test_")) or entry.name in ("conftest.py", "model.py"):
            continue
        if entry.is_file() and entry.suffix == ".py":
            tree.copy_file(entry, f"{version_dir}/{entry.name}")
        elif entry.is_dir() and entry.name not in SKIPPED_DIRS and (entry / "__init__.py").exists():
            tree.copy_tree(entry, f"{version_dir}/{entry.name}")


def _vendor_runtime(tree: SafeTree, version_dir: str) -> None:
    package = Path(pbkit.__file__).parent
    tree.copy_file(package / "__init__.py", f"{version_dir}/pbkit/__init__.py")
    tree.copy_file(package / "py.typed", f"{version_dir}/pbkit/py.typed")
    for sub in RUNTIME_PACKAGES:
        for file in sorted((package / sub).glob("*.py")):
            tree.copy_file(file, f"{version_dir}/pbkit/{sub}/{file.name}")


def _copy_extra(tree: SafeTree, project: Path, extra: str, version_dir: str, model: str) -> None:
    relative = Path(extra)
    if relative.is_absolute() or ".." in relative.parts:
        raise BuildError(f"model '{model}': extra file {extra!r} must be a path inside {project}")
    source = project / relative
    if source.is_dir():
        tree.copy_tree(source, f"{version_dir}/{relative}")
    elif source.is_file():
        tree.copy_file(source, f"{version_dir}/{relative}")
    else:
        raise BuildError(f"model '{model}': extra file {extra!r} not found in {project}")


def choose_variant(submodel: Submodel, project: Path, preference: Sequence[str]) -> Variant:
    """The variant a submodel is built with (see :func:`build`)."""
    declared = {v.kind: v for v in submodel.variants}
    if preference and preference[0] in declared:
        forced = declared[preference[0]]
        if isinstance(forced, FileVariant) and not _variant_file(forced, project).exists():
            raise BuildError(
                f"submodel '{submodel.name}': variant {forced.kind} needs {_variant_file(forced, project)}, which "
                "does not exist; create it first (see `pbkit export --help`)"
            )
        return forced
    ordered = [declared[k] for k in preference if k in declared] + list(submodel.variants)
    for candidate in ordered:
        if isinstance(candidate, PythonVariant) or _variant_file(candidate, project).exists():  # type: ignore[arg-type]
            return candidate
    missing = ", ".join(
        str(_variant_file(v, project)) for v in submodel.variants if isinstance(v, FileVariant)
    )
    raise BuildError(f"submodel '{submodel.name}': no variant can be built; missing {missing}")


def _variant_file(variant: FileVariant, project: Path) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(variant.path)))
    return path if path.is_absolute() else project / path


def _build_submodel(tree: SafeTree, declared: DeclaredSubmodel, preference: Sequence[str]) -> BuiltModel:
    submodel = declared.submodel
    variant = choose_variant(submodel, declared.project, preference)
    if isinstance(variant, PythonVariant):
        built = _build_python_model(
            tree, submodel.spec, declared.project, declared.module, declared.attribute, python_variant=True
        )
        built.kind = "python variant"
        return built
    assert isinstance(variant, FileVariant)
    spec = submodel.variant_spec(variant)
    _reset_model_dir(tree, spec.name)
    tree.write_text(f"{spec.name}/config.pbtxt", render(model_config(spec)))
    source = _variant_file(variant, declared.project)
    if source.is_dir():
        tree.copy_tree(source, f"{spec.name}/1/{variant.model_filename}")
    else:
        tree.copy_file(source, f"{spec.name}/1/{variant.model_filename}")
    return BuiltModel(spec.name, variant.kind, tree.root / spec.name)


def _check_references(declarations: Declarations, report: BuildReport) -> None:
    built = {m.name for m in report.models}
    for model in declarations.models:
        for sub in _submodel_refs(model):
            if sub.name not in built and not sub.variants:
                raise BuildError(
                    f"model '{model.spec.name}' calls submodel '{sub.name}', which is not declared in the "
                    "models being built"
                )


def _submodel_refs(model: DeclaredModel) -> list[Submodel]:
    return [value for value in vars(model.model_class).values() if isinstance(value, Submodel)]
