"""Model repositories as Triton reads them: ``config.pbtxt``, auto-fill, normalization, version policy,
and the JSON rendering of the config that Python models receive in ``args["model_config"]``."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from tritonclient.grpc import model_config_pb2 as mc

from . import dtypes

ModelConfig = mc.ModelConfig
PYTHON_BACKEND = "python"
PYTHON_FILENAME = "model.py"
ENSEMBLE_PLATFORM = "ensemble"

_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


class ConfigError(Exception):
    """A model configuration Triton would refuse to load."""


def version_dirs(model_dir: Path) -> list[int]:
    """The numeric version folders of a model, ascending."""
    found = []
    for child in model_dir.iterdir() if model_dir.is_dir() else []:
        if child.is_dir() and child.name.isdigit() and not child.name.startswith("0"):
            found.append(int(child.name))
    return sorted(found)


def read_config(model_dir: Path) -> ModelConfig:
    """The model's ``config.pbtxt`` parsed (an empty config when the file is absent)."""
    config = ModelConfig()
    path = model_dir / "config.pbtxt"
    if path.is_file():
        try:
            text_format.Parse(path.read_text(), config)
        except text_format.ParseError as exc:
            raise ConfigError(f"failed to read text proto from {path}: {exc}") from None
    return config


def parse_config_json(text: str) -> ModelConfig:
    """A model config given as JSON (``load_model(config=...)``)."""
    from google.protobuf import json_format

    config = ModelConfig()
    try:
        json_format.Parse(text, config)
    except json_format.ParseError as exc:
        raise ConfigError(str(exc)) from None
    return config


def autofill(config: ModelConfig, model_name: str, model_dir: Path) -> None:
    """Triton's backend auto-fill for Python models: name, ``backend`` and ``default_model_filename``."""
    if not config.name:
        config.name = model_name
    if config.name != model_name:
        raise ConfigError(
            f"unexpected name '{config.name}' in model configuration, expecting '{model_name}' "
            "(the name of the model's folder)"
        )
    if config.platform == ENSEMBLE_PLATFORM:
        return
    versions = version_dirs(model_dir)
    if not config.backend:
        if config.default_model_filename == PYTHON_FILENAME:
            config.backend = PYTHON_BACKEND
        elif not config.platform and not config.default_model_filename and versions:
            if (model_dir / str(versions[-1]) / PYTHON_FILENAME).exists():
                config.backend = PYTHON_BACKEND
    if config.backend == PYTHON_BACKEND and not config.default_model_filename:
        config.default_model_filename = PYTHON_FILENAME


def normalize(config: ModelConfig) -> None:
    """Triton's ``NormalizeModelConfig`` and ``NormalizeInstanceGroup`` on a machine without GPUs."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if config.HasField("dynamic_batching") and not config.dynamic_batching.preferred_batch_size:
        if config.max_batch_size > 0:
            config.dynamic_batching.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        if config.sequence_batching.max_sequence_idle_microseconds == 0:
            config.sequence_batching.max_sequence_idle_microseconds = 1_000_000
    if config.HasField("ensemble_scheduling"):
        return
    if not config.optimization.HasField("input_pinned_memory"):
        config.optimization.input_pinned_memory.enable = True
    if not config.optimization.HasField("output_pinned_memory"):
        config.optimization.output_pinned_memory.enable = True
    if not config.instance_group:
        group = config.instance_group.add()
        group.name = config.name
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == mc.ModelInstanceGroup.KIND_AUTO:
            group.kind = mc.ModelInstanceGroup.KIND_CPU
        if group.count < 1:
            group.count = (
                2
                if group.kind == mc.ModelInstanceGroup.KIND_CPU
                and config.backend
                in (
                    "tensorflow",
                    "onnxruntime",
                )
                else 1
            )


def validate(config: ModelConfig) -> None:
    """The checks Triton makes before loading that matter for serving (names, types, batching)."""
    for kind, tensors in (("input", config.input), ("output", config.output)):
        for tensor in tensors:
            if not tensor.name:
                raise ConfigError(f"model '{config.name}' must specify 'name' for every {kind}")
            if tensor.data_type == mc.TYPE_INVALID:
                raise ConfigError(f"model {kind} '{tensor.name}' must specify 'data_type'")
    if config.max_batch_size < 0:
        raise ConfigError(f"'max_batch_size' must be non-negative value for {config.name}")
    if config.HasField("dynamic_batching"):
        for size in config.dynamic_batching.preferred_batch_size:
            if size < 1 or size > config.max_batch_size:
                raise ConfigError(
                    f"dynamic batching preferred size must be positive and <= max batch size for {config.name}"
                )


def select_versions(config: ModelConfig, available: list[int]) -> list[int]:
    """The versions the version policy serves among ``available`` (ascending)."""
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return list(available)
    if which == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in available if v in wanted]
    count = policy.latest.num_versions if which == "latest" else 1
    return available[-max(count, 1) :] if available else []


# ------------------------------------------------------------------------------------ JSON rendering
def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    if field.type in _INT64_TYPES:
        return str(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE) and float(value).is_integer():
        return int(value)
    return value


def _is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is None:
        return field.label == FieldDescriptor.LABEL_REPEATED
    return bool(flag() if callable(flag) else flag)


def _message(message: Any) -> dict[str, Any]:
    """Protobuf's JSON with ``always_print_primitive_fields`` and proto field names, in declaration order."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {
                str(key): (
                    _message(item) if value_field.message_type is not None else _scalar(value_field, item)
                )
                for key, item in value.items()
            }
        elif _is_repeated(field):
            out[field.name] = [
                _message(item) if field.message_type is not None else _scalar(field, item) for item in value
            ]
        elif field.message_type is not None:
            if message.HasField(field.name):
                out[field.name] = _message(value)
        elif field.has_presence and not message.HasField(field.name):
            continue
        else:
            out[field.name] = _scalar(field, value)
    return out


def _fix_ints(document: dict[str, Any], *path: str) -> None:
    """Turn the int64 strings at ``path`` into numbers (Triton's ``FixInt``/``FixIntArray``)."""
    for holder, key in _walk(document, list(path)):
        value = holder.get(key)
        if isinstance(value, list):
            holder[key] = [int(v) for v in value]
        elif isinstance(value, str):
            holder[key] = int(value)


def _walk(node: Any, path: list[str]) -> Iterator[tuple[dict[str, Any], str]]:
    if not isinstance(node, dict) or not path:
        return
    head, rest = path[0], path[1:]
    if not rest:
        if head in node:
            yield node, head
        return
    if head == "*":
        for child in node.values():
            yield from _walk(child, rest)
        return
    child = node.get(head)
    if isinstance(child, list):
        for item in child:
            yield from _walk(item, rest)
    else:
        yield from _walk(child, rest)


_TRITON_INT_FIXES: tuple[tuple[str, ...], ...] = (
    ("input", "dims"),
    ("input", "reshape", "shape"),
    ("output", "dims"),
    ("output", "reshape", "shape"),
    ("version_policy", "specific", "versions"),
    ("dynamic_batching", "max_queue_delay_microseconds"),
    ("dynamic_batching", "priority_levels"),
    ("dynamic_batching", "default_priority_level"),
    ("dynamic_batching", "default_queue_policy", "default_timeout_microseconds"),
    ("dynamic_batching", "priority_queue_policy", "*", "default_timeout_microseconds"),
    ("sequence_batching", "max_sequence_idle_microseconds"),
    ("sequence_batching", "oldest", "max_queue_delay_microseconds"),
    ("sequence_batching", "direct", "max_queue_delay_microseconds"),
    ("sequence_batching", "state", "dims"),
    ("ensemble_scheduling", "step", "model_version"),
    ("model_warmup", "inputs", "*", "dims"),
)


def config_dict(config: ModelConfig) -> dict[str, Any]:
    """The config as Triton renders it to JSON (``ModelConfigToJson``): int64 fixes included."""
    document = _message(config)
    for path in _TRITON_INT_FIXES:
        _fix_ints(document, *path)
    return document


def config_json(config: ModelConfig) -> str:
    """``args["model_config"]``: compact JSON, non-ASCII kept as UTF-8."""
    return json.dumps(config_dict(config), separators=(",", ":"), ensure_ascii=False)


def config_from_dict(document: dict[str, Any]) -> ModelConfig:
    """A config from the dict ``auto_complete_config`` returned (``ModelConfig._model_config``)."""
    from google.protobuf import json_format

    config = ModelConfig()
    try:
        json_format.ParseDict(document, config, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise ConfigError(str(exc)) from None
    return config


def apply_auto_complete(config: ModelConfig, completed: ModelConfig) -> None:
    """Take what ``auto_complete_config`` may change (Triton's ``UpdateModelConfig``), then re-normalize."""
    config.max_batch_size = completed.max_batch_size
    del config.input[:]
    config.input.extend(completed.input)
    del config.output[:]
    config.output.extend(completed.output)
    current = config.WhichOneof("scheduling_choice")
    updated = completed.WhichOneof("scheduling_choice")
    if current is None and updated is not None:
        getattr(config, updated).CopyFrom(getattr(completed, updated))
    elif current is not None and updated is not None and current != updated:
        raise ConfigError("Cannot update scheduling choice when auto-completing.")
    if completed.HasField("model_transaction_policy"):
        config.model_transaction_policy.decoupled = completed.model_transaction_policy.decoupled
    normalize(config)


def data_type_of(config_type: int) -> int:
    """The Triton data type (enum value) of a config ``DataType``; they share numbering."""
    return int(config_type)


def type_name(config_type: int) -> str:
    """The protocol name of a config data type (``FP32``, ``BYTES``, ...)."""
    return dtypes.PROTOCOL_NAMES.get(int(config_type), "INVALID")


def is_decoupled(config: ModelConfig) -> bool:
    """Whether the model uses the decoupled transaction policy."""
    return config.HasField("model_transaction_policy") and config.model_transaction_policy.decoupled
