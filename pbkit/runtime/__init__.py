"""The small runtime that runs inside Triton: numpy and ``triton_python_backend_utils`` only.

``pbkit build`` copies this package (with :mod:`pbkit.spec`) next to each generated
``model.py``, so a stock Triton image needs no pbkit install.
"""

from .batching import BatchingLoop, Request, RequestBatch
from .context import SetupContext
from .errors import InvalidArgument, RequestFailed, SubmodelError
from .triton_model import PbkitModel

__all__ = [
    "BatchingLoop",
    "InvalidArgument",
    "PbkitModel",
    "Request",
    "RequestBatch",
    "RequestFailed",
    "SetupContext",
    "SubmodelError",
]
