"""Export the embedding encoder to ONNX, for the submodel's ``Onnx("onnx/model.onnx")`` variant.

From the command line, with pbkit's exporter (it checks ONNX Runtime against torch)::

    pbkit export models/ensemble_embedding/export_onnx.py:encoder_target \\
        --format onnx --exporter torchscript --no-repositories

or, to choose the checkpoint (it must be the one the served tokenizer uses)::

    python models/ensemble_embedding/export_onnx.py [--checkpoint DIR] [--output PATH]

The traced module is :class:`network.TrimmedEncoder`, the one the Python variant runs, so
the graph trims each batch to its longest real sentence too. That cut depends on the data
(the attention mask), which ``torch.export`` cannot express through transformers' attention
code; the TorchScript-based exporter records it as a dynamic ``Slice``, hence
``--exporter torchscript``. Torch and transformers are imported only when exporting.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: Of different lengths on purpose: the example batch must hold padding, or the trace could
#: record transformers' "no padding, no mask" shortcut as the only path.
EXAMPLE_SENTENCES = (
    "A short one.",
    "A somewhat longer example sentence, so that the batch holds padding.",
    "Ünïcödé, 中文 and emoji 🙂 too.",
)
#: Batches whose longest sentence differs from the example's: the cut must follow them.
CHECK_BATCHES = (
    ("x",),
    ("A sentence.", "word " * 600),
    ("Another batch, another longest length.", "Two."),
)


def encoder_target(checkpoint: str = "") -> Any:
    """What ``pbkit export`` exports: the trimmed encoder, its submodel and example token ids."""
    from pbkit.export import ExportTarget

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from common import EMBEDDING_DIM, max_seq_length, resolve_checkpoint
    from encoder import TOKEN_INPUTS, encoder
    from network import load_encoder
    from transformers import AutoTokenizer

    path = resolve_checkpoint(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    length = max_seq_length(path, tokenizer.model_max_length)

    def tokens(sentences: Sequence[str]) -> dict[str, Any]:
        encoded = tokenizer(
            list(sentences),
            padding="max_length",
            truncation=True,
            max_length=length,
            return_token_type_ids=True,
            return_tensors="pt",
        )
        return {name: encoded[name] for name in TOKEN_INPUTS}

    return ExportTarget(
        module=load_encoder(path, EMBEDDING_DIM),
        submodel=encoder,
        example_inputs=tokens(EXAMPLE_SENTENCES),
        check_inputs=[tokens(batch) for batch in CHECK_BATCHES],
    )


def export(checkpoint: str = "", output: Path | None = None) -> Any:
    """Export and check; returns pbkit's ExportReport (raises ParityError if ORT disagrees)."""
    from pbkit.export import declared_path, export_onnx

    target = encoder_target(checkpoint)
    path = output if output is not None else declared_path(target.submodel, "onnx")
    with warnings.catch_warnings():
        # The tracer notes Python-side branches in transformers' masking code; both are
        # decided by shapes the trim keeps equal, and the parity checks cover other lengths.
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean")
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        return export_onnx(
            target.module,
            target.submodel,
            target.example_inputs,
            path=path,
            check_inputs=target.check_inputs,
            exporter="torchscript",
            opset=17,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", default="", help="Hugging Face model folder (default: all-MiniLM-L6-v2)"
    )
    parser.add_argument("--output", type=Path, help="ONNX file (default: the variant's onnx/model.onnx)")
    args = parser.parse_args(argv)
    print(export(args.checkpoint, args.output).summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
