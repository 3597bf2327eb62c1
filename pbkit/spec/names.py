"""Rules for names that end up as folders, config fields and generated code."""

from __future__ import annotations

import keyword
import re

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,127}$")
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


class InvalidNameError(ValueError):
    """A name is unsafe or invalid."""


def check_model_name(name: str, *, what: str = "model name") -> str:
    """Return ``name`` if it is a safe model name (a single folder name), else raise."""
    _check_common(name, what)
    if name in (".", "..") or not _MODEL_NAME.match(name) or ".." in name:
        raise InvalidNameError(
            f"{what} {name!r} is not allowed: use 1-128 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit, without '..' or path separators"
        )
    return name


def check_tensor_name(name: str, *, what: str = "tensor name") -> str:
    """Return ``name`` if it is a safe tensor name, else raise."""
    _check_common(name, what)
    if not _TENSOR_NAME.match(name):
        raise InvalidNameError(
            f"{what} {name!r} is not allowed: use 1-128 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or '_'"
        )
    return name


def check_parameter_name(name: str, *, what: str = "parameter name") -> str:
    """Return ``name`` if it is a safe config parameter key, else raise."""
    _check_common(name, what)
    if not _PARAMETER_NAME.match(name):
        raise InvalidNameError(
            f"{what} {name!r} is not allowed: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'"
        )
    return name


def check_identifier(name: str, *, what: str) -> str:
    """Return ``name`` if it is a plain Python identifier usable in generated code, else raise."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise InvalidNameError(f"{what} {name!r} is not a plain ASCII Python identifier")
    return name


def _check_common(name: object, what: str) -> None:
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidNameError(f"{what} must not be empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidNameError(f"{what} {name!r} contains control characters")
    if "/" in name or "\\" in name:
        raise InvalidNameError(f"{what} {name!r} contains a path separator")
