"""Serve the MiniLM encoder with PyTriton's ``@batch`` (the PyTriton side of the comparison).

Run by ``bench/run.py`` in its own process, so the model's Python code does not share an
interpreter with the load generator: ``python bench/pytriton_minilm.py --grpc-port P --http-port Q
--metrics-port R``. It serves until SIGINT/SIGTERM. Max batch size and queue delay are the ones
``minilm_pbkit`` uses.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "models" / "minilm"))

from minilm_encoder import EMBEDDING_SIZE, MAX_BATCH_SIZE, QUEUE_DELAY_US, MiniLMEncoder

MODEL_NAME = "minilm_pytriton"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    encoder = MiniLMEncoder()

    @batch
    def infer(TEXT: np.ndarray) -> dict[str, np.ndarray]:
        texts = [bytes(text).decode("utf-8") for text in TEXT[:, 0]]
        return {"EMBEDDING": encoder.embed(texts)}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
    )

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=infer,
            inputs=[Tensor(name="TEXT", dtype=np.object_, shape=(1,))],
            outputs=[Tensor(name="EMBEDDING", dtype=np.float32, shape=(EMBEDDING_SIZE,))],
            config=ModelConfig(
                max_batch_size=MAX_BATCH_SIZE,
                batcher=DynamicBatcher(max_queue_delay_microseconds=QUEUE_DELAY_US),
            ),
            strict=False,
        )
        triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
