"""``pbkit check``: validate any Triton model repository, hand-written ones too.

Every problem names the file and the field, for example
``add_sub/config.pbtxt: input[1].dims: ...``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from ..spec.names import InvalidNameError, check_model_name, check_parameter_name, check_tensor_name
from .parse import ConfigSyntaxError, read_config

#: The file each platform or backend loads from a version folder by default.
MODEL_FILES = {
    "python": "model.py",
    "tensorrt_plan": "model.plan",
    "onnxruntime_onnx": "model.onnx",
    "onnxruntime": "model.onnx",
    "pytorch_libtorch": "model.pt",
    "pytorch": "model.pt",
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
    "openvino": "model.xml",
}
KNOWN_PLATFORMS = {
    "tensorrt_plan",
    "onnxruntime_onnx",
    "pytorch_libtorch",
    "ensemble",
    "tensorflow_savedmodel",
    "tensorflow_graphdef",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a repository."""

    path: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}" if self.field else f"{self.path}: {self.message}"


def check_repository(repository: str | Path) -> list[Problem]:
    """All problems found in ``repository``; an empty list means it is valid."""
    root = Path(repository)
    if not root.is_dir():
        return [Problem(str(root), "", "is not a folder")]
    problems: list[Problem] = []
    configs: dict[str, pb.ModelConfig] = {}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() or p.is_symlink()):
        if model_dir.name.startswith("."):
            continue
        config = _check_model(model_dir, problems)
        if config is not None:
            configs[model_dir.name] = config
    for name, config in configs.items():
        if config.platform == "ensemble":
            _check_ensemble(name, config, configs, problems)
    return problems


def _check_model(model_dir: Path, problems: list[Problem]) -> pb.ModelConfig | None:
    name = model_dir.name
    try:
        check_model_name(name, what="model folder name")
    except InvalidNameError as exc:
        problems.append(Problem(name, "", str(exc)))
        return None
    if model_dir.is_symlink():
        problems.append(
            Problem(name, "", "model folder is a symbolic link; Triton may follow it out of the repository")
        )
    path = model_dir / "config.pbtxt"
    where = f"{name}/config.pbtxt"
    if not path.is_file():
        problems.append(Problem(where, "", "missing: every model needs a config.pbtxt"))
        return None
    try:
        config = read_config(path)
    except ConfigSyntaxError as exc:
        problems.append(Problem(where, "schema", str(exc).split(": ", 1)[-1]))
        return None
    except UnicodeDecodeError:
        problems.append(Problem(where, "", "is not UTF-8 text"))
        return None
    _check_fields(name, where, config, problems)
    _check_versions(model_dir, where, config, problems)
    return config


def _check_fields(name: str, where: str, config: pb.ModelConfig, problems: list[Problem]) -> None:
    add = lambda field, message: problems.append(Problem(where, field, message))  # noqa: E731
    if config.name and config.name != name:
        add("name", f"is {config.name!r} but the folder is {name!r}; they must match")
    if not config.backend and not config.platform:
        add("backend", "neither backend nor platform is set")
    if config.platform and config.platform not in KNOWN_PLATFORMS:
        add("platform", f"unknown platform {config.platform!r}; expected one of {sorted(KNOWN_PLATFORMS)}")
    if config.max_batch_size < 0:
        add("max_batch_size", f"must be >= 0, got {config.max_batch_size}")
    is_ensemble = config.platform == "ensemble"
    for kind, tensors in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for index, tensor in enumerate(tensors):
            field = f"{kind}[{index}]"
            try:
                check_tensor_name(tensor.name, what=f"{kind} name")
            except InvalidNameError as exc:
                add(f"{field}.name", str(exc))
            if tensor.name in seen:
                add(f"{field}.name", f"duplicate {kind} name {tensor.name!r}")
            seen.add(tensor.name)
            if tensor.data_type == pb.TYPE_INVALID:
                add(f"{field}.data_type", "is missing or TYPE_INVALID")
            for position, dim in enumerate(tensor.dims):
                if dim < -1 or dim == 0:
                    add(f"{field}.dims[{position}]", f"must be positive or -1, got {dim}")
            if not tensor.dims and config.max_batch_size == 0:
                add(f"{field}.dims", "is empty; with max_batch_size 0 every tensor needs its full shape")
            if tensor.HasField("reshape") and config.max_batch_size == 0 and not tensor.reshape.shape:
                add(f"{field}.reshape", "an empty reshape needs max_batch_size > 0")
    if not config.output and not is_ensemble:
        add("output", "declares no outputs")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            add("dynamic_batching", "needs max_batch_size > 0")
        for size in config.dynamic_batching.preferred_batch_size:
            if size < 1 or (config.max_batch_size and size > config.max_batch_size):
                add(
                    "dynamic_batching.preferred_batch_size",
                    f"{size} is outside 1..max_batch_size ({config.max_batch_size})",
                )
    if config.HasField("sequence_batching") and config.HasField("dynamic_batching"):
        add("sequence_batching", "cannot be combined with dynamic_batching")
    for index, group in enumerate(config.instance_group):
        field = f"instance_group[{index}]"
        if group.count < 0:
            add(f"{field}.count", f"must be >= 0, got {group.count}")
        if group.gpus and group.kind == pb.ModelInstanceGroup.KIND_CPU:
            add(f"{field}.gpus", "set on a KIND_CPU group")
    if is_ensemble:
        if config.instance_group:
            add("instance_group", "ensembles have no instances")
        if not config.ensemble_scheduling.step:
            add("ensemble_scheduling", "an ensemble needs ensemble_scheduling with at least one step")
    elif config.HasField("ensemble_scheduling"):
        add("ensemble_scheduling", 'is only valid with platform "ensemble"')
    for key in config.parameters:
        try:
            check_parameter_name(key)
        except InvalidNameError as exc:
            add(f"parameters[{key!r}]", str(exc))
    if config.default_model_filename:
        filename = config.default_model_filename
        if "/" in filename or "\\" in filename or filename in (".", ".."):
            add("default_model_filename", f"{filename!r} must be a plain file name")


def _check_versions(model_dir: Path, where: str, config: pb.ModelConfig, problems: list[Problem]) -> None:
    name = model_dir.name
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        problems.append(Problem(name, "version folders", "none found: add a numeric folder such as 1/"))
        return
    if 0 in versions:
        problems.append(
            Problem(f"{name}/0", "version folders", "version 0 is ignored by Triton; versions start at 1")
        )
    if config.version_policy.WhichOneof("policy_choice") == "specific":
        for version in config.version_policy.specific.versions:
            if version not in versions:
                problems.append(
                    Problem(where, "version_policy.specific.versions", f"version {version} has no folder")
                )
    if config.platform == "ensemble":
        return
    key = config.backend or config.platform
    filename = config.default_model_filename or MODEL_FILES.get(key, "")
    if not filename:
        return
    for version in _served_versions(config, versions):
        path = model_dir / str(version) / filename
        relative = f"{name}/{version}/{filename}"
        if not path.exists():
            problems.append(Problem(relative, "", f"missing: the {key} backend loads this file"))
        elif filename.endswith(".py"):
            _check_python_model(path, relative, problems)


def _served_versions(config: pb.ModelConfig, versions: list[int]) -> Iterable[int]:
    which = config.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return versions
    if which == "specific":
        return [v for v in config.version_policy.specific.versions if v in versions]
    count = config.version_policy.latest.num_versions or 1
    return versions[-count:]


def _check_python_model(path: Path, relative: str, problems: list[Problem]) -> None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        problems.append(Problem(relative, f"line {exc.lineno}", f"syntax error: {exc.msg}"))
        return
    except UnicodeDecodeError:
        problems.append(Problem(relative, "", "is not UTF-8 text"))
        return
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TritonPythonModel":
            return
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TritonPythonModel" for t in node.targets
        ):
            return
    problems.append(
        Problem(relative, "TritonPythonModel", "the Python backend needs a class named TritonPythonModel")
    )


def _check_ensemble(
    name: str, config: pb.ModelConfig, configs: dict[str, pb.ModelConfig], problems: list[Problem]
) -> None:
    where = f"{name}/config.pbtxt"
    available = {t.name: t for t in config.input}
    produced_by: dict[str, str] = {}
    pending = list(enumerate(config.ensemble_scheduling.step))
    for index, step in pending:
        field = f"ensemble_scheduling.step[{index}]"
        target = configs.get(step.model_name)
        if target is None:
            problems.append(
                Problem(where, f"{field}.model_name", f"model {step.model_name!r} is not in the repository")
            )
            continue
        if step.model_name == name:
            problems.append(Problem(where, f"{field}.model_name", "an ensemble cannot call itself"))
            continue
        if config.max_batch_size > 0 and target.max_batch_size < config.max_batch_size:
            problems.append(
                Problem(
                    where,
                    f"{field}.model_name",
                    f"{step.model_name!r} has max_batch_size {target.max_batch_size}, below the ensemble's "
                    f"{config.max_batch_size}",
                )
            )
        inputs = {t.name for t in target.input}
        outputs = {t.name for t in target.output}
        for key in step.input_map:
            if key not in inputs:
                problems.append(
                    Problem(where, f"{field}.input_map[{key!r}]", f"{step.model_name!r} has no input {key!r}")
                )
        for key, value in step.output_map.items():
            if key not in outputs:
                problems.append(
                    Problem(
                        where, f"{field}.output_map[{key!r}]", f"{step.model_name!r} has no output {key!r}"
                    )
                )
            if value in produced_by:
                problems.append(
                    Problem(
                        where,
                        f"{field}.output_map[{key!r}]",
                        f"tensor {value!r} is also produced by {produced_by[value]!r}",
                    )
                )
            produced_by[value] = step.model_name
        required = {t.name for t in target.input if not t.optional}
        missing = sorted(required - set(step.input_map))
        if missing:
            problems.append(
                Problem(
                    where,
                    f"{field}.input_map",
                    f"required inputs {missing} of {step.model_name!r} are not mapped",
                )
            )
    for index, step in pending:
        for key, value in step.input_map.items():
            if value not in available and value not in produced_by:
                problems.append(
                    Problem(
                        where,
                        f"ensemble_scheduling.step[{index}].input_map[{key!r}]",
                        f"tensor {value!r} is neither an ensemble input nor produced by a step",
                    )
                )
    for index, tensor in enumerate(config.output):
        if tensor.name not in produced_by:
            problems.append(
                Problem(
                    where, f"output[{index}]", f"ensemble output {tensor.name!r} is not produced by any step"
                )
            )
