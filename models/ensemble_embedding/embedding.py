"""The ``embedding`` ensemble: TEXT (BYTES) -> EMBEDDING (FP32, unit length).

tokenizer -> encoder -> pooling, wired by tensor name: the tokenizer's ``input_ids``,
``attention_mask`` and ``token_type_ids`` feed the encoder, whose ``last_hidden_state`` and
the same ``attention_mask`` feed the pooling step; the pooling output
``sentence_embedding`` is renamed to the ensemble output ``EMBEDDING``.

Ask the served ensemble for two sentences' similarity with ``python query.py URL A B``.
"""

from __future__ import annotations

from common import EMBEDDING_DIM
from encoder import encoder
from pooling import Pooling
from tokenizer import Tokenizer

import pbkit

embedding = pbkit.Ensemble(
    "embedding",
    steps=[Tokenizer, encoder, pbkit.Step(Pooling, outputs={"sentence_embedding": "EMBEDDING"})],
    inputs=[pbkit.Input("TEXT", "BYTES", [1])],
    outputs=[pbkit.Output("EMBEDDING", "FP32", [EMBEDDING_DIM])],
    description="Sentence embeddings: tokenizer, encoder and mean pooling with L2 normalisation.",
)
