"""Read ``config.pbtxt`` back into a message and into a :class:`ModelSpec`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from ..spec.dtypes import DataType
from ..spec.model import (
    DynamicBatching,
    InstanceGroup,
    ModelSpec,
    QueuePolicy,
    VersionPolicy,
    Warmup,
    WarmupInput,
)
from ..spec.tensors import Input, Output


class ConfigSyntaxError(ValueError):
    """``config.pbtxt`` is not valid text format for Triton's ModelConfig."""


def parse_config(text: str, *, source: str = "config.pbtxt") -> pb.ModelConfig:
    """Parse text format into a ``ModelConfig``; syntax errors name the source and line."""
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigSyntaxError(f"{source}: {exc}") from exc
    return config


def read_config(path: str | Path) -> pb.ModelConfig:
    path = Path(path)
    return parse_config(path.read_text(encoding="utf-8"), source=str(path))


def spec_from_config(config: pb.ModelConfig) -> ModelSpec:
    """The declaration a config describes (everything ``config.pbtxt`` can hold)."""
    batching = None
    if config.HasField("dynamic_batching"):
        message = config.dynamic_batching
        queue = None
        if message.HasField("default_queue_policy"):
            q = message.default_queue_policy
            queue = QueuePolicy(
                timeout_action=pb.ModelQueuePolicy.TimeoutAction.Name(q.timeout_action),  # type: ignore[arg-type]
                default_timeout_us=q.default_timeout_microseconds,
                allow_timeout_override=q.allow_timeout_override,
                max_queue_size=q.max_queue_size,
            )
        batching = DynamicBatching(
            preferred_batch_sizes=tuple(message.preferred_batch_size),
            max_queue_delay_us=message.max_queue_delay_microseconds,
            preserve_ordering=message.preserve_ordering,
            priority_levels=message.priority_levels,
            default_priority_level=message.default_priority_level,
            queue_policy=queue,
        )
    policy = None
    if config.HasField("version_policy"):
        which = config.version_policy.WhichOneof("policy_choice")
        if which == "all":
            policy = VersionPolicy.all()
        elif which == "specific":
            policy = VersionPolicy.specific(*config.version_policy.specific.versions)
        else:
            policy = VersionPolicy.latest(config.version_policy.latest.num_versions)
    warmup = tuple(
        Warmup(
            name=sample.name,
            batch_size=sample.batch_size,
            count=sample.count or 1,
            inputs={
                key: WarmupInput(
                    DataType.from_config_name(pb.DataType.Name(value.data_type)),
                    tuple(value.dims),
                    "random" if value.random_data else "zero",
                )
                for key, value in sample.inputs.items()
            },
        )
        for sample in config.model_warmup
    )
    return ModelSpec(
        name=config.name,
        inputs=tuple(
            Input(
                t.name,
                DataType.from_config_name(pb.DataType.Name(t.data_type)),
                tuple(t.dims),
                optional=t.optional,
                allow_ragged_batch=t.allow_ragged_batch,
            )
            for t in config.input
        ),
        outputs=tuple(
            Output(t.name, DataType.from_config_name(pb.DataType.Name(t.data_type)), tuple(t.dims))
            for t in config.output
        ),
        max_batch_size=config.max_batch_size,
        dynamic_batching=batching,
        instance_groups=tuple(
            InstanceGroup(
                kind=pb.ModelInstanceGroup.Kind.Name(g.kind).removeprefix("KIND_"),  # type: ignore[arg-type]
                count=g.count or 1,
                gpus=tuple(g.gpus),
                name=g.name,
            )
            for g in config.instance_group
        ),
        parameters={key: value.string_value for key, value in config.parameters.items()},
        decoupled=config.model_transaction_policy.decoupled,
        warmup=warmup,
        version_policy=policy,
        response_cache=config.response_cache.enable,
        backend=config.backend,
        platform=config.platform,
        default_model_filename=config.default_model_filename,
    )


def config_view(spec: ModelSpec) -> ModelSpec:
    """``spec`` without the fields that live only in code (defaults, padding, docs, files)."""
    return replace(
        spec,
        inputs=tuple(
            Input(t.name, t.dtype, t.dims, optional=t.optional, allow_ragged_batch=t.allow_ragged_batch)
            for t in spec.inputs
        ),
        outputs=tuple(Output(t.name, t.dtype, t.dims) for t in spec.outputs),
        description="",
        extra_files=(),
        group_by=(),
        version=1,
    )
