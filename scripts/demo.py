"""The main job end to end: build models/, serve it on a local Triton, query every example.

1. ``pbkit build models/ -o model_repository`` and ``pbkit check model_repository``;
2. start tritonserver on it (free ports on 127.0.0.1) and wait until every model is ready;
3. query each example over HTTP or gRPC with tritonclient:
   * ``embedding``: the cosine similarity of two sentences (real all-MiniLM-L6-v2);
   * ``whisper``: a transcription of speech generated with espeak-ng (real Whisper tiny.en);
   * ``stable_diffusion``: an image from the tiny checkpoint, saved as ``demo_output/stable_diffusion.png``;
4. stop the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pbkit.testing.server import TritonServer

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"
OUTPUT = ROOT / "demo_output"
sys.path.insert(0, str(ROOT / "models" / "ensemble_embedding"))


def main() -> int:
    from pbkit.build import build
    from pbkit.config.check import check_repository
    from pbkit.testing.server import TritonServer

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    report = build(ROOT / "models", REPOSITORY, clean=True)
    print(report.summary())
    problems = check_repository(REPOSITORY)
    if problems:
        print("\n".join(map(str, problems)))
        return 1
    print(f"pbkit check {REPOSITORY.name}: ok\n")
    OUTPUT.mkdir(exist_ok=True)
    started = time.perf_counter()
    with TritonServer(REPOSITORY, log_file=OUTPUT / "tritonserver.log", startup_timeout=600) as server:
        print(
            f"tritonserver ready in {time.perf_counter() - started:.0f} s: {server.http_url} (HTTP), {server.grpc_url} (gRPC)"
        )
        for state in server.model_states():
            print(f"  {state.name:<28} {state.state} {state.reason}")
        failures = 0
        for name, query in QUERIES.items():
            if not server.is_model_ready(name):
                print(f"\n[{name}] not ready")
                failures += 1
                continue
            print(f"\n[{name}]")
            try:
                query(server)
            except Exception as exc:  # show every example's outcome, then fail
                print(f"  FAILED: {type(exc).__name__}: {exc}")
                failures += 1
    print(f"\nserver stopped; log in {OUTPUT / 'tritonserver.log'}")
    return 1 if failures else 0


def query_embedding(server: TritonServer) -> None:
    from query import cosine_similarity, embed

    pairs = [
        ("A man is eating food.", "A man is eating a piece of bread."),
        ("A man is eating food.", "The girl is carrying a baby."),
    ]
    for first, second in pairs:
        a, b = embed(server.http_url, [first, second])
        print(f"  similarity({first!r}, {second!r}) = {cosine_similarity(a, b):.4f}")


def query_whisper(server: TritonServer) -> None:
    import soundfile

    sentence = "one two three four five six seven eight nine ten"
    with tempfile.TemporaryDirectory() as folder:
        wav_path = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "110", "-w", str(wav_path), sentence], check=True)
        audio, rate = soundfile.read(wav_path, dtype="float32")
    inputs = {"WAV": audio[None, :], "SAMPLE_RATE": np.array([[rate]], dtype=np.int32)}
    outputs = server.infer("whisper", inputs, timeout=600)
    text = outputs["TEXT"].reshape(-1)[0].decode("utf-8")
    print(f"  espeak-ng said: {sentence!r}")
    print(f"  whisper heard:  {text!r}")


def query_stable_diffusion(server: TritonServer) -> None:
    from PIL import Image

    inputs = {
        "PROMPT": np.array([[b"a photo of a cat"]], dtype=object),
        "SEED": np.array([[42]], dtype=np.int64),
    }
    outputs = server.infer("stable_diffusion", inputs, timeout=600)
    image = outputs["IMAGE"][0]
    path = OUTPUT / "stable_diffusion.png"
    Image.fromarray(image).save(path)
    print(f"  prompt 'a photo of a cat', seed 42 -> {image.shape[1]}x{image.shape[0]} image saved to {path}")


QUERIES: dict[str, Callable[[TritonServer], None]] = {
    "embedding": query_embedding,
    "whisper": query_whisper,
    "stable_diffusion": query_stable_diffusion,
}

if __name__ == "__main__":
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is missing: run `make setup` (or apt-get install espeak-ng)", file=sys.stderr)
    sys.exit(main())
