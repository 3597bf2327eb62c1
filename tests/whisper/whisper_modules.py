"""The whisper example modules, imported the way Triton sees them: as top-level sibling modules.

They are loaded by :class:`pbkit.testing.ProjectModules`, so other examples with modules of the same names
(``networks`` ...) can be imported in the same test session.
"""

from __future__ import annotations

from pathlib import Path

from pbkit.testing import ProjectModules

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


WHISPER = ProjectModules(MODEL_DIR, MODULE_NAMES)
#: Make the example's modules importable by their top-level names (for imports done inside ``setup``).
whisper_namespace = WHISPER.importable

features = WHISPER["features"]
decoding = WHISPER["decoding"]
convert_ct2 = WHISPER["convert_ct2"]
tiny_random = WHISPER["tiny_random"]
networks = WHISPER["networks"]
transcriber = WHISPER["transcriber"]
whisper_submodels = WHISPER["whisper_submodels"]
whisper_orchestrator = WHISPER["whisper_orchestrator"]
export_variants = WHISPER["export_variants"]
