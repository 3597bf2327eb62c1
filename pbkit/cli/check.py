"""``pbkit check REPO``: validate a Triton model repository (any, hand-written too)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    command = subparsers.add_parser("check", help="validate a model repository", description=__doc__)
    command.add_argument("repository", help="model repository folder")
    command.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config.check import check_repository

    problems = check_repository(args.repository)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found in {args.repository}")
        return 1
    print(f"{args.repository}: ok")
    return 0
