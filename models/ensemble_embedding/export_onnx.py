"""Export the embedding encoder to ONNX for the submodel's ``Onnx("onnx/model.onnx")`` variant.

Usage::

    python models/ensemble_embedding/export_onnx.py [--checkpoint DIR] [--output PATH]

It traces :class:`network.TrimmedEncoder` (the same module the Python variant runs) with
torch's TorchScript-based ONNX exporter, keeping the batch and sequence axes dynamic and the
trim to the longest real sentence inside the graph, then checks ONNX Runtime against torch
on a few sentences. The checkpoint defaults to the packaged all-MiniLM-L6-v2; the served
tokenizer must use the same checkpoint. Build with ``--variant onnx`` to serve the file.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
#: Different lengths on purpose: the example batch must contain padding, or the exporter
#: may record transformers' "no padding, skip the mask" shortcut as the only path.
EXAMPLE_SENTENCES = (
    "A short one.",
    "A somewhat longer example sentence, so that the batch holds padding.",
    "Ünïcödé, 中文 and emoji 🙂 too.",
)


def export(checkpoint: str, output: Path, opset: int = 17, tolerance: float = 1e-4) -> float:
    """Write the ONNX file and return the largest |ORT - torch| difference over real tokens."""
    import torch
    from transformers import AutoTokenizer

    sys.path.insert(0, str(HERE))
    from common import EMBEDDING_DIM, max_seq_length, resolve_checkpoint
    from network import load_encoder

    path = resolve_checkpoint(checkpoint)
    network = load_encoder(path, EMBEDDING_DIM)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    length = max_seq_length(path, tokenizer.model_max_length)
    example = tokenizer(
        list(EXAMPLE_SENTENCES),
        padding="max_length",
        truncation=True,
        max_length=length,
        return_token_type_ids=True,
        return_tensors="pt",
    )
    args = tuple(example[name] for name in INPUT_NAMES)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    dynamic["last_hidden_state"] = {0: "batch", 1: "longest"}
    output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python-side constants in transformers
        torch.onnx.export(
            network,
            args,
            str(output),
            input_names=list(INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    difference = check(output, network, tokenizer, length)
    if difference > tolerance:
        raise RuntimeError(f"ONNX Runtime differs from torch by {difference:.2e} (> {tolerance:g})")
    return difference


def check(output: Path, network: object, tokenizer: object, length: int) -> float:
    """Largest |ORT - torch| over real tokens, for batches of one and of several lengths."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    batches = [
        ["x"],
        [*EXAMPLE_SENTENCES, "word " * (2 * length)],
        ["Another batch, another longest length."],
    ]
    worst = 0.0
    for sentences in batches:
        encoded = tokenizer(  # type: ignore[operator]
            sentences,
            padding="max_length",
            truncation=True,
            max_length=length,
            return_token_type_ids=True,
            return_tensors="np",
        )
        feed = {name: encoded[name].astype(np.int64) for name in INPUT_NAMES}
        (got,) = session.run(["last_hidden_state"], feed)
        with torch.inference_mode():
            want = network(*(torch.from_numpy(feed[name]) for name in INPUT_NAMES)).numpy()  # type: ignore[operator]
        if got.shape != want.shape:
            raise RuntimeError(f"ONNX output shape {got.shape} differs from torch's {want.shape}")
        mask = feed["attention_mask"][:, : got.shape[1], np.newaxis]
        worst = max(worst, float(np.abs((got - want) * mask).max()))
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", default="", help="Hugging Face model folder (default: all-MiniLM-L6-v2)"
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "onnx" / "model.onnx", help="ONNX file (default: %(default)s)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    args = parser.parse_args(argv)
    difference = export(args.checkpoint, args.output, opset=args.opset)
    print(f"wrote {args.output} (ONNX Runtime vs torch: max |diff| {difference:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
