"""The pbkit side of the PyTriton comparison: all-MiniLM-L6-v2 sentence embeddings as one model."""

from typing import TypedDict

from minilm_encoder import MAX_BATCH_SIZE, QUEUE_DELAY_US, MiniLMEncoder

import pbkit
from pbkit import BYTES, FP32


class Embeddings(TypedDict):
    EMBEDDING: FP32[384]


@pbkit.model(
    name="minilm_pbkit",
    max_batch_size=MAX_BATCH_SIZE,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=QUEUE_DELAY_US),
)
class MiniLMPbkit:
    """UTF-8 sentence in, L2-normalised 384-d embedding out."""

    def setup(self, ctx: pbkit.SetupContext) -> None:
        self.encoder = MiniLMEncoder()

    def predict(self, TEXT: BYTES[1]) -> Embeddings:
        texts = [text.decode("utf-8") for text in TEXT[:, 0]]
        return {"EMBEDDING": self.encoder.embed(texts)}
