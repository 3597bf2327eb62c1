"""Models for the ``pbkit bench`` smoke tests: one right, one that mixes up responses, one that stalls."""

import time
from typing import TypedDict

import numpy as np

import pbkit
from pbkit import FP32


class Echoed(TypedDict):
    OUTPUT: FP32[-1]


@pbkit.model(name="bench_identity", max_batch_size=16, dynamic_batching=True)
class Identity:
    """OUTPUT = INPUT."""

    def predict(self, INPUT: FP32[-1]) -> Echoed:
        return {"OUTPUT": INPUT}


@pbkit.model(
    name="bench_mixed_up",
    max_batch_size=16,
    dynamic_batching=pbkit.DynamicBatching(max_queue_delay_us=20_000),
)
class MixedUp:
    """Gives each request of a batch the next request's input: a scheduler bug seen from outside."""

    def predict(self, INPUT: FP32[-1]) -> Echoed:
        return {"OUTPUT": np.roll(INPUT, 1, axis=0)}


@pbkit.model(name="bench_stalls", max_batch_size=16)
class Stalls:
    """Echoes, but takes 3 s whenever the first value of the batch is positive."""

    def predict(self, INPUT: FP32[-1]) -> Echoed:
        if INPUT[0, 0] > 0.0:
            time.sleep(3.0)
        return {"OUTPUT": INPUT}
