"""``pbkit serve PATH``: run a model repository on a real local tritonserver.

PATH is either a model repository (folders with ``config.pbtxt``) or a folder of pbkit
declarations (such as ``models/``), which is built first into ``--output``. The server is
``tritonserver`` from PATH, or else the one bundled in the ``nvidia-pytriton`` wheel. One
Ctrl-C stops the server and every Python stub process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "serve",
        help="build if needed, then serve a repository on a local tritonserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("path", help="model repository, or a folder of pbkit models to build first")
    command.add_argument(
        "-o",
        "--output",
        default="model_repository",
        help="where to build declarations (default: %(default)s)",
    )
    command.add_argument("--variant", action="append", choices=("tensorrt", "onnx", "torchscript", "python"))
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    command.add_argument("--http-port", type=int, default=8000)
    command.add_argument("--grpc-port", type=int, default=8001)
    command.add_argument("--metrics-port", type=int, default=8002)
    command.add_argument(
        "--explicit", action="store_true", help="explicit model control (load/unload over the API)"
    )
    command.add_argument("--log-verbose", type=int, default=0)
    command.add_argument("--log-file", help="also write the server log here")
    command.add_argument("--quiet", action="store_true", help="do not echo the server log")
    command.set_defaults(func=run)


def is_repository(path: Path) -> bool:
    """Whether ``path`` holds model folders with ``config.pbtxt`` (rather than declarations)."""
    return path.is_dir() and any(
        (child / "config.pbtxt").is_file() for child in path.iterdir() if child.is_dir()
    )


def run(args: argparse.Namespace) -> int:
    from ..server.serve import serve_repository

    path = Path(args.path)
    if not path.exists():
        print(f"pbkit serve: error: {path} does not exist", file=sys.stderr)
        return 2
    repository = path
    if not is_repository(path):
        from ..build import BuildError, DiscoveryError, build

        try:
            report = build(path, args.output, variant=args.variant, clean=True)
        except (BuildError, DiscoveryError, ValueError, TypeError) as exc:
            print(f"pbkit serve: build failed: {exc}", file=sys.stderr)
            return 1
        print(report.summary(), flush=True)
        repository = Path(args.output)
    return serve_repository(
        repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        explicit=args.explicit,
        log_verbose=args.log_verbose,
        stream_logs=not args.quiet,
        log_file=args.log_file,
    )
