"""Rendering, parsing and checking ``config.pbtxt`` through Triton's model-config schema."""

from .generate import ensemble_config, model_config, render
from .parse import ConfigSyntaxError, config_view, parse_config, read_config, spec_from_config

__all__ = [
    "ConfigSyntaxError",
    "config_view",
    "ensemble_config",
    "model_config",
    "parse_config",
    "read_config",
    "render",
    "spec_from_config",
]
