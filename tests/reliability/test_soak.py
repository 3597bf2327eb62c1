"""A short soak in CI: a few hundred checked requests at concurrency 64 through the embedding ensemble
and a batching pbkit model, on the session's tritonserver, with nothing lost or mismatched.

The full soak (20,000 requests per model) is ``python bench/soak.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from soak import SoakResult, soak

pytestmark = pytest.mark.server

CONCURRENCY = 64


@pytest.mark.parametrize(("model", "requests"), [("soak_batcher", 1000), ("embedding", 200)])
def test_short_soak_loses_and_mismatches_nothing(triton: Any, model: str, requests: int) -> None:
    result: SoakResult = soak(
        triton.grpc_url, model, requests=requests, concurrency=CONCURRENCY, pool_size=64
    )
    assert result.problems == []
    assert (result.level.requests, result.level.ok) == (requests, requests)
    assert result.server_requests, "the server's statistics were read"
    assert triton.health().healthy
