"""Helpers the whisper tests import (kept out of conftest.py, whose module name is shared)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from whisper_modules import MODEL_DIR

NUMBERS_TEXT = "one two three four five six seven eight nine ten"


def build_repository(
    out: Path, checkpoint: Path | None = None, onnx_dir: Path | None = None, **options: Any
) -> Path:
    """``pbkit build models/whisper`` into ``out``. ``checkpoint`` is passed through
    ``PBKIT_WHISPER_CHECKPOINT`` (else the build's default, ``checkpoints/whisper-tiny.en``), ``onnx_dir``
    through ``PBKIT_WHISPER_ONNX_DIR``; ``options`` go to ``build`` (``variant=``)."""
    from pbkit.build import build

    with pytest.MonkeyPatch.context() as env:
        for name, value in (("PBKIT_WHISPER_CHECKPOINT", checkpoint), ("PBKIT_WHISPER_ONNX_DIR", onnx_dir)):
            if value is None:
                env.delenv(name, raising=False)
            else:
                env.setenv(name, str(value))
        build(MODEL_DIR, out, **options)
    return out


def espeak_wav(text: str, out: Path) -> Path:
    """Speak ``text`` with espeak-ng (American English, slow) into a WAV file."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not on PATH; install it (apt-get install -y espeak-ng)")
    subprocess.run(
        [espeak, "-v", "en-us", "-s", "110", "-w", str(out), text], check=True, capture_output=True
    )
    return out
