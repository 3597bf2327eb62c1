"""``pbkit export MODULE:FACTORY``: export torch modules as submodel variants and check them.

FACTORY is a function in MODULE (a .py file, or a dotted module importable from the
current folder) that takes no arguments and returns what to export: a
``pbkit.export.ExportTarget(module, submodel, example_inputs, ...)``, a list of them, or
a tuple ``(torch module, pbkit.Submodel, {input name: example tensor})``. Example inputs
have the batch axis first when the submodel batches.

For each submodel this writes model.onnx and the TorchScript file (to the paths its
variants declare, or into --output), checks each against torch on the example inputs
(and on them with the batch doubled) within |exported - torch| <= atol + rtol*|torch|,
writes a one-model repository with the config of every variant under --repositories and
runs `pbkit check` on it, and prints the exact trtexec command that builds model.plan on
a GPU machine (min/opt/max shapes from the declaration or --min/--opt/--max-shape,
fp16 unless --no-fp16). When trtexec or the tensorrt package is available here, it also
builds the plan (see --plan). The exit status is 1 when an export is outside tolerance.

Example, in a project whose submodels declare pbkit.Onnx("exported/encoder.onnx") etc.:

    pbkit export export_models.py:towers      # writes exported/*.onnx, *.pt; prints trtexec
    pbkit build . -o repository --variant onnx
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "export",
        help="export torch modules to ONNX/TorchScript/TensorRT submodel variants",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("factory", metavar="MODULE:FACTORY", help="e.g. models/bls/export_models.py:encoder")
    command.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=("onnx", "torchscript", "tensorrt"),
        help="what to export; repeat for several (default: all three; tensorrt implies onnx)",
    )
    command.add_argument(
        "-o",
        "--output",
        help="folder for the files, named <submodel>.onnx/.pt/.plan (default: the paths the variants declare)",
    )
    command.add_argument(
        "--repositories",
        default="variant_repositories",
        help="where each variant's one-model repository goes, as <dir>/<kind>/<submodel>/ (default: %(default)s)",
    )
    command.add_argument("--no-repositories", action="store_true", help="write no configs")
    command.add_argument("--atol", type=float, help="absolute tolerance (default: the target's, else 1e-4)")
    command.add_argument("--rtol", type=float, help="relative tolerance (default: the target's, else 1e-3)")
    command.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    command.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "torchscript"),
        default="auto",
        help="ONNX exporter; auto tries torch.export first (default: %(default)s)",
    )
    command.add_argument(
        "--script", action="store_true", help="script the module instead of tracing it for TorchScript"
    )
    command.add_argument("--no-fp16", dest="fp16", action="store_false", help="build the plan in FP32")
    for bound in ("min", "opt", "max"):
        command.add_argument(
            f"--{bound}-shape",
            dest=f"{bound}_shapes",
            action="append",
            default=[],
            metavar="INPUT=AxBxC",
            help=f"TensorRT {bound} shape of an input, batch first (repeatable; overrides the factory's)",
        )
    command.add_argument("--workspace-mib", type=int, help="TensorRT workspace limit in MiB")
    command.add_argument(
        "--plan",
        choices=("auto", "build", "skip"),
        default="auto",
        help="build model.plan: when TensorRT is available (auto), always (build: fail without it), or never",
    )
    command.add_argument("--trtexec", help="path of the trtexec executable (default: found on PATH)")
    command.set_defaults(func=run)


def _shapes(values: list[str], flag: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise ValueError(f"{flag} {value!r}: expected INPUT=AxBxC, e.g. features=8x4") from None
    return shapes


def run(args: argparse.Namespace) -> int:
    from ..export import ExportError, export_target, load_targets

    try:
        overrides = {
            f"{bound}_shapes": _shapes(getattr(args, f"{bound}_shapes"), f"--{bound}-shape")
            for bound in ("min", "opt", "max")
        }
        targets = load_targets(args.factory)
        ok = True
        for target in targets:
            for key, shapes in overrides.items():
                if shapes:
                    setattr(target, key, {**(getattr(target, key) or {}), **shapes})
            result = export_target(
                target,
                formats=args.formats or ("onnx", "torchscript", "tensorrt"),
                output=args.output,
                repositories=None if args.no_repositories else args.repositories,
                atol=args.atol,
                rtol=args.rtol,
                opset=args.opset,
                exporter=args.exporter,
                torchscript_method="script" if args.script else "trace",
                fp16=args.fp16,
                workspace_mib=args.workspace_mib,
                plan=args.plan,
                trtexec=args.trtexec,
            )
            print(result.summary())
            ok &= result.ok
    except (ExportError, ValueError) as exc:
        print(f"pbkit export: error: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1
