"""Triton configs for a submodel's file variants, and one-model repositories holding them."""

from __future__ import annotations

import os
from pathlib import Path

from ..build.files import SafeTree
from ..config.generate import model_config, render
from ..spec.submodel import FileVariant, Onnx, Submodel, TensorRT, TorchScript

FILE_VARIANTS: dict[str, type[FileVariant]] = {"tensorrt": TensorRT, "onnx": Onnx, "torchscript": TorchScript}
SUFFIXES = {"tensorrt": ".plan", "onnx": ".onnx", "torchscript": ".pt"}


def file_variant(submodel: Submodel, kind: str) -> FileVariant:
    """The submodel's declared variant of ``kind``, or a default one named after the submodel."""
    if kind not in FILE_VARIANTS:
        raise ValueError(f"unknown file variant {kind!r}; expected one of {', '.join(FILE_VARIANTS)}")
    declared = submodel.variant(kind)  # type: ignore[arg-type]
    if isinstance(declared, FileVariant):
        return declared
    return FILE_VARIANTS[kind](f"{submodel.name}{SUFFIXES[kind]}")


def declared_path(submodel: Submodel, kind: str, base: str | Path | None = None) -> Path | None:
    """Where the submodel declares its ``kind`` file, resolved against ``base`` or the declaring folder."""
    declared = submodel.variant(kind)  # type: ignore[arg-type]
    if not isinstance(declared, FileVariant):
        return None
    path = Path(os.path.expandvars(os.path.expanduser(declared.path)))
    if path.is_absolute():
        return path
    root = Path(base) if base is not None else submodel.declared_in
    return (root / path) if root is not None else path


def variant_config(submodel: Submodel, kind: str) -> str:
    """The ``config.pbtxt`` text pbkit builds for the submodel's ``kind`` variant."""
    return render(model_config(submodel.variant_spec(file_variant(submodel, kind))))


def write_variant_repository(
    submodel: Submodel, kind: str, repository: str | Path, model_file: str | Path | None = None
) -> Path:
    """Write ``<repository>/<name>/config.pbtxt`` and ``1/<model file>`` for the ``kind`` variant.

    ``model_file`` (a file, or an ONNX folder) is hard-linked when possible, else copied;
    without it the version folder is left empty, for a plan built later on the GPU machine.
    Returns the model's folder.
    """
    variant = file_variant(submodel, kind)
    tree = SafeTree(repository)
    tree.remove(submodel.name)
    tree.write_text(f"{submodel.name}/config.pbtxt", variant_config(submodel, kind))
    version = tree.mkdir(f"{submodel.name}/1")
    if model_file is not None:
        source = Path(model_file)
        if source.is_dir():
            tree.copy_tree(source, f"{submodel.name}/1/{variant.model_filename}")
        else:
            _link_or_copy(tree, source, f"{submodel.name}/1/{variant.model_filename}")
    return version.parent


def _link_or_copy(tree: SafeTree, source: Path, relative: str) -> None:
    target = tree.root / relative
    try:
        os.link(source, target)
    except OSError:
        tree.copy_file(source, relative)
