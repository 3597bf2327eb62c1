"""Turning declarations into a standard Triton model repository."""

from .discover import DiscoveryError, discover
from .files import SafeTree, UnsafePathError
from .repository import BuildError, BuildReport, build

__all__ = ["BuildError", "BuildReport", "DiscoveryError", "SafeTree", "UnsafePathError", "build", "discover"]
