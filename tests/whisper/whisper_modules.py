"""The whisper example modules, imported the way Triton sees them: as top-level sibling modules.

They are loaded with ``models/whisper`` first on ``sys.path``, then their generic top-level names are removed
from ``sys.modules`` again, so other examples with modules of the same names (``networks`` ...) can be imported
in the same test session. The loaded modules keep references to each other.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "whisper"
MODULE_NAMES = ("features", "decoding", "convert_ct2", "tiny_random", "networks", "transcriber")


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
features = _MODULES["features"]
decoding = _MODULES["decoding"]
convert_ct2 = _MODULES["convert_ct2"]
tiny_random = _MODULES["tiny_random"]
networks = _MODULES["networks"]
transcriber = _MODULES["transcriber"]
