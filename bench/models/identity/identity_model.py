"""The pbkit side of the overhead benchmark: an identity model (OUTPUT = INPUT)."""

from typing import TypedDict

import pbkit
from pbkit import FP32

#: Shared with the hand-written model: same IO, batch size and batching settings.
MAX_BATCH_SIZE = 64


class IdentityOutputs(TypedDict):
    OUTPUT: FP32[-1]


@pbkit.model(name="identity_pbkit", max_batch_size=MAX_BATCH_SIZE, dynamic_batching=True)
class IdentityPbkit:
    """Returns its input unchanged."""

    def predict(self, INPUT: FP32[-1]) -> IdentityOutputs:
        return {"OUTPUT": INPUT}
