"""A small demo: a batching add/sub model and a string model."""

from typing import TypedDict

import numpy as np

import pbkit
from pbkit import BYTES, FP32


class AddSubOutputs(TypedDict):
    SUM: FP32[4]
    DIFF: FP32[4]


@pbkit.model(max_batch_size=8, dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=500))
class AddSub:
    """Element-wise sum and difference of two vectors."""

    def predict(self, A: FP32[4], B: FP32[4]) -> AddSubOutputs:
        return {"SUM": A + B, "DIFF": A - B}


class Shout(TypedDict):
    LOUD: BYTES[1]


@pbkit.model(max_batch_size=16)
class Upper:
    """Upper-cases UTF-8 text."""

    def predict(self, TEXT: BYTES[1]) -> Shout:
        return {
            "LOUD": np.vectorize(lambda b: b.decode("utf-8").upper().encode("utf-8"), otypes=[object])(TEXT)
        }
