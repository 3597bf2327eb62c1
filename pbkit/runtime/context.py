"""What ``setup(ctx)`` receives: the facts Triton passes to ``initialize``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.model import ModelSpec


@dataclass(frozen=True)
class SetupContext:
    """The instance's identity, placement, folders, config and parameters."""

    model_name: str
    model_version: int
    instance_name: str
    instance_kind: str
    device_id: int
    model_dir: Path
    config: Mapping[str, Any]
    parameters: Mapping[str, str]
    spec: ModelSpec | None = None
    args: Mapping[str, str] = field(default_factory=dict)

    @property
    def version_dir(self) -> Path:
        """The folder holding ``model.py`` and the files shipped with the model."""
        return self.model_dir / str(self.model_version)

    @property
    def device(self) -> str:
        """A torch-style device string: ``"cuda:<id>"`` for GPU instances, else ``"cpu"``."""
        return f"cuda:{self.device_id}" if self.instance_kind == "GPU" else "cpu"

    def path(self, relative: str) -> Path:
        """The path of a file shipped with the model (``extra_files``)."""
        return self.version_dir / relative

    def parameter(self, name: str, default: str | None = None) -> str:
        """A config parameter's value; raises KeyError naming it when absent without default."""
        if name in self.parameters:
            return self.parameters[name]
        if default is not None:
            return default
        raise KeyError(f"model '{self.model_name}' has no parameter '{name}'")

    @classmethod
    def from_args(cls, args: Mapping[str, str], spec: ModelSpec | None = None) -> SetupContext:
        """Build the context from the ``args`` dict Triton passes to ``initialize``."""
        config = json.loads(args["model_config"])
        parameters = {
            key: value.get("string_value", "") if isinstance(value, Mapping) else str(value)
            for key, value in (config.get("parameters") or {}).items()
        }
        return cls(
            model_name=args.get("model_name", config.get("name", "")),
            model_version=int(args.get("model_version", "1") or 1),
            instance_name=args.get("model_instance_name", ""),
            instance_kind=args.get("model_instance_kind", "CPU"),
            device_id=int(args.get("model_instance_device_id", "0") or 0),
            model_dir=Path(args.get("model_repository", ".")),
            config=config,
            parameters=parameters,
            spec=spec,
            args=dict(args),
        )
