"""The stable_diffusion example modules, imported the way Triton sees them: as top-level sibling modules.

They are loaded with ``models/stable_diffusion`` first on ``sys.path``, then their generic top-level names
(``networks``, ``pipeline`` ...) are removed from ``sys.modules`` again, so other examples with modules of the
same names can be imported in the same test session. The loaded modules keep references to each other.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "stable_diffusion"
MODULE_NAMES = (
    "clip_vocab",
    "tiny_checkpoint",
    "networks",
    "pipeline",
    "sd_submodels",
    "text_to_image",
    "export_variants",
    "sd_client",
)


@contextmanager
def project_importable() -> Iterator[None]:
    """Let code that imports the project's modules lazily (inside functions) find them, as inside Triton;
    the modules it imports are forgotten afterwards."""
    saved = {name: sys.modules.pop(name) for name in MODULE_NAMES if name in sys.modules}
    sys.path.insert(0, str(MODEL_DIR))
    try:
        yield
    finally:
        sys.path.remove(str(MODEL_DIR))
        for name in MODULE_NAMES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


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
clip_vocab = _MODULES["clip_vocab"]
tiny_checkpoint = _MODULES["tiny_checkpoint"]
networks = _MODULES["networks"]
pipeline = _MODULES["pipeline"]
sd_submodels = _MODULES["sd_submodels"]
text_to_image = _MODULES["text_to_image"]
export_variants = _MODULES["export_variants"]
sd_client = _MODULES["sd_client"]
