"""``pbkit build MODELS``: write a Triton model repository from pbkit declarations."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "build",
        help="build a model repository from a folder of pbkit models",
        description=__doc__,
    )
    command.add_argument("models", help="folder of model projects (e.g. models/), one project, or one file")
    command.add_argument(
        "-o", "--output", default="model_repository", help="repository folder (default: %(default)s)"
    )
    command.add_argument(
        "--variant",
        action="append",
        choices=("tensorrt", "onnx", "torchscript", "python"),
        help="preferred submodel variant; repeat for a priority list (default: each submodel's own order)",
    )
    command.add_argument(
        "--clean",
        action="store_true",
        help="remove the output folder's model folders first (other files are kept)",
    )
    command.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..build import BuildError, DiscoveryError, UnsafePathError, build
    from ..spec.ensemble import EnsembleError

    try:
        report = build(args.models, args.output, variant=args.variant, clean=args.clean)
    except (BuildError, DiscoveryError, UnsafePathError, EnsembleError, ValueError, TypeError) as exc:
        print(f"pbkit build: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
