"""The stable_diffusion example modules, imported the way Triton sees them: as top-level sibling modules.

They are loaded by :class:`pbkit.testing.ProjectModules`, so other examples with modules of the same names
(``networks``, ``pipeline`` ...) can be imported in the same test session.
"""

from __future__ import annotations

from pathlib import Path

from pbkit.testing import ProjectModules

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


SD = ProjectModules(MODEL_DIR, MODULE_NAMES)
#: Let code that imports the project's modules lazily (inside functions) find them, as inside Triton.
project_importable = SD.importable
clip_vocab = SD["clip_vocab"]
tiny_checkpoint = SD["tiny_checkpoint"]
networks = SD["networks"]
pipeline = SD["pipeline"]
sd_submodels = SD["sd_submodels"]
text_to_image = SD["text_to_image"]
export_variants = SD["export_variants"]
sd_client = SD["sd_client"]
