"""Print the cosine similarity of two sentences, as embedded by the served ``embedding`` ensemble.

Usage::

    python query.py http://127.0.0.1:8000 "A man is eating food." "A man is eating a piece of bread."

The URL is Triton's HTTP endpoint (``http://host:port`` or ``host:port``), or its gRPC
endpoint written ``grpc://host:port``. Both sentences go in one request, as a batch of two.
This is a client script: it only needs numpy and tritonclient.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np


def embed(url: str, sentences: Sequence[str], model: str = "embedding", timeout: float = 60.0) -> np.ndarray:
    """The ensemble's EMBEDDING rows for ``sentences`` (one request)."""
    text = np.array([[s.encode("utf-8")] for s in sentences], dtype=object)
    if url.startswith("grpc://"):
        import tritonclient.grpc as client

        connection = client.InferenceServerClient(url.removeprefix("grpc://"))
        request = client.InferInput("TEXT", list(text.shape), "BYTES")
        request.set_data_from_numpy(text)
        result = connection.infer(model, [request], client_timeout=timeout)
    else:
        import tritonclient.http as client  # type: ignore[no-redef]

        address = url.removeprefix("http://").rstrip("/")
        connection = client.InferenceServerClient(
            address, connection_timeout=timeout, network_timeout=timeout
        )
        request = client.InferInput("TEXT", list(text.shape), "BYTES")
        request.set_data_from_numpy(text, binary_data=True)
        result = connection.infer(model, [request])
    connection.close()
    return np.asarray(result.as_numpy("EMBEDDING"), dtype=np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (the ensemble's are already unit length)."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="Triton endpoint: http://host:port (default scheme) or grpc://host:port")
    parser.add_argument("first", help="first sentence")
    parser.add_argument("second", help="second sentence")
    parser.add_argument("--model", default="embedding", help="ensemble name (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        first, second = embed(args.url, [args.first, args.second], model=args.model)
    except Exception as exc:  # report any client or server failure in one line
        print(f"query failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{cosine_similarity(first, second):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
