"""The whisper example modules, imported the way Triton sees them: as top-level sibling modules.

They are loaded with ``models/whisper`` first on ``sys.path``, then their generic top-level names are removed
from ``sys.modules`` again, so other examples with modules of the same names (``networks`` ...) can be imported
in the same test session. The loaded modules keep references to each other.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "whisper"
MODULE_NAMES = (
    "features",
    "decoding",
    "convert_ct2",
    "tiny_random",
    "networks",
    "transcriber",
    "whisper_submodels",
    "whisper_orchestrator",
    "export_variants",
)


def _load() -> dict[str, ModuleType]:
    saved = {name: sys.modules.pop(name) for name in MODULE_NAMES if name in sys.modules}
    sys.path.insert(0, str(MODEL_DIR))
    try:
        return {name: importlib.import_module(name) for name in MODULE_NAMES}
    finally:
        sys.path.remove(str(MODEL_DIR))
        for name in MODULE_NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


_MODULES = _load()


@contextlib.contextmanager
def whisper_namespace() -> Iterator[None]:
    """Make the example's modules importable by their top-level names (for imports done inside ``setup``)."""
    saved = {name: sys.modules.pop(name) for name in MODULE_NAMES if name in sys.modules}
    sys.modules.update(_MODULES)
    try:
        yield
    finally:
        for name in MODULE_NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


features = _MODULES["features"]
decoding = _MODULES["decoding"]
convert_ct2 = _MODULES["convert_ct2"]
tiny_random = _MODULES["tiny_random"]
networks = _MODULES["networks"]
transcriber = _MODULES["transcriber"]
whisper_submodels = _MODULES["whisper_submodels"]
whisper_orchestrator = _MODULES["whisper_orchestrator"]
export_variants = _MODULES["export_variants"]
