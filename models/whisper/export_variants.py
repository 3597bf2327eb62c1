"""Write the files of the submodels' ONNX and TensorRT variants (``whisper_submodels``).

::

    python models/whisper/export_variants.py [--checkpoint DIR]      # onnx/whisper_{encoder,decoder}.onnx
    python models/whisper/export_variants.py --trtexec                # also print the TensorRT build commands
    pbkit build models/whisper -o model_repository --variant onnx      # serve them with ONNX Runtime

The ONNX files come from ``networks.export_onnx`` (``torch.export``, opset 18, weights embedded, dynamic
batch / token / past axes; onnxruntime matches torch to ~1e-5). The checkpoint defaults to the ``checkpoint``
parameter the repository is built with (``whisper_submodels.default_checkpoint``): export the same one.

A TensorRT engine is tied to the GPU and TensorRT version that serve it, so it is built there, from the ONNX
files, with the commands :func:`trtexec_commands` prints (for tiny.en, 4 layers, 6 heads of 64; folders
shortened)::

    trtexec --onnx=onnx/whisper_encoder.onnx --saveEngine=engines/whisper_encoder.plan \\
        --minShapes=input_features:1x80x3000 --optShapes=input_features:4x80x3000 \\
        --maxShapes=input_features:16x80x3000 --fp16
    trtexec --onnx=onnx/whisper_decoder.onnx --saveEngine=engines/whisper_decoder.plan \\
        --minShapes=input_ids:1x1,past_key_values:1x4x2x6x0x64,cross_key_values:1x4x2x6x1500x64 \\
        --optShapes=input_ids:4x1,past_key_values:4x4x2x6x32x64,cross_key_values:4x4x2x6x1500x64 \\
        --maxShapes=input_ids:16x4,past_key_values:16x4x2x6x447x64,cross_key_values:16x4x2x6x1500x64 --fp16

The decoder's profile starts at an empty past (``P = 0``, the first step); TensorRT accepts empty tensors.
Whether fp16 keeps the greedy tokens equal to fp32 must be checked on the serving GPU (drop ``--fp16`` if not).
Torch and transformers are imported only when exporting.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import whisper_submodels as submodels

ONNX_DIR = submodels.variant_dir(submodels.ONNX_DIR_ENV, "onnx")
ENGINES_DIR = submodels.variant_dir(submodels.ENGINES_DIR_ENV, "engines")
ENCODER, DECODER = "whisper_encoder", "whisper_decoder"
#: The longest decoder prompt: start of transcript, language, task, no timestamps.
LONGEST_PROMPT = 4
OPT_BATCH = 4
OPT_PAST = 32


def export(checkpoint: str | Path | None = None, onnx_dir: str | Path = ONNX_DIR) -> tuple[Path, Path]:
    """Export both submodels of ``checkpoint`` to ``<onnx_dir>/whisper_{encoder,decoder}.onnx``."""
    import networks

    path = Path(checkpoint) if checkpoint else Path(submodels.default_checkpoint())
    folder = Path(onnx_dir)
    return networks.export_onnx(path, folder / f"{ENCODER}.onnx", folder / f"{DECODER}.onnx")


def _shape(*dims: int) -> str:
    return "x".join(str(d) for d in dims)


def trtexec_commands(
    checkpoint: str | Path | None = None,
    onnx_dir: str | Path = ONNX_DIR,
    engines_dir: str | Path = ENGINES_DIR,
    fp16: bool = True,
) -> list[str]:
    """The ``trtexec`` commands that build both engines from the ONNX files, for ``checkpoint``'s sizes."""
    path = Path(checkpoint) if checkpoint else Path(submodels.default_checkpoint())
    dims = submodels.CheckpointDims(path)
    top = submodels.MAX_BATCH_SIZE
    frames, positions = submodels.FEATURE_FRAMES, submodels.AUDIO_POSITIONS
    kv = (dims.layers, 2, dims.heads)

    def profile(batch: int, tokens: int, past: int) -> str:
        return ",".join(
            [
                f"input_ids:{_shape(batch, tokens)}",
                f"past_key_values:{_shape(batch, *kv, past, dims.head_dim)}",
                f"cross_key_values:{_shape(batch, *kv, positions, dims.head_dim)}",
            ]
        )

    encoder_shapes = [_shape(batch, dims.n_mels, frames) for batch in (1, OPT_BATCH, top)]
    argv = {
        ENCODER: [
            f"--minShapes=input_features:{encoder_shapes[0]}",
            f"--optShapes=input_features:{encoder_shapes[1]}",
            f"--maxShapes=input_features:{encoder_shapes[2]}",
        ],
        DECODER: [
            f"--minShapes={profile(1, 1, 0)}",
            f"--optShapes={profile(OPT_BATCH, 1, OPT_PAST)}",
            f"--maxShapes={profile(top, LONGEST_PROMPT, dims.max_positions - 1)}",
        ],
    }
    commands = []
    for name, shapes in argv.items():
        words = [
            "trtexec",
            f"--onnx={Path(onnx_dir) / f'{name}.onnx'}",
            f"--saveEngine={Path(engines_dir) / f'{name}.plan'}",
            *shapes,
        ]
        commands.append(shlex.join([*words, "--fp16"] if fp16 else words))
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="Whisper checkpoint folder (default: the build's)")
    parser.add_argument("--onnx-dir", type=Path, default=ONNX_DIR)
    parser.add_argument("--trtexec", action="store_true", help="also print the TensorRT build commands")
    args = parser.parse_args(argv)
    for file in export(args.checkpoint, args.onnx_dir):
        print(f"wrote {file}")
    if args.trtexec:
        print("\nOn the serving GPU, build the TensorRT engines with:")
        for command in trtexec_commands(args.checkpoint, args.onnx_dir):
            print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
