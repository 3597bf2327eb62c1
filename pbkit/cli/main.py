"""``pbkit``: build, check, serve, scaffold, export and benchmark Triton Python models.

Each subcommand lives in its own module ``pbkit.cli.<name>`` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("build", "check", "serve", "new", "export", "bench")


def parser() -> argparse.ArgumentParser:
    import pbkit

    root = argparse.ArgumentParser(prog="pbkit", description=__doc__.splitlines()[0].split(": ", 1)[1])
    root.add_argument("--version", action="version", version=f"pbkit {pbkit.__version__}")
    subparsers = root.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pbkit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pbkit.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not getattr(args, "func", None):
        parser().print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
