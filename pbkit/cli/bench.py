"""``pbkit bench MODEL``: load a model on a running Triton server and check every response.

Sends requests from concurrent async workers (gRPC or HTTP), after a warm-up, at one concurrency
or a sweep (``-c 1,8,32`` or ``-c 1:32`` for powers of two), each level bounded by a request count
and/or a duration. Reports throughput and latency p50/p90/p99; a failed request, a lost one (past
``--timeout``) and a response that fails its check all count as errors, and any error makes the
exit status 1.

Response checks: ``reference`` (default; each response must equal the one its input got when sent
alone before the load), ``echo`` (outputs equal inputs; ``--echo OUT=IN`` pairs them), ``none``,
``MODULE:FUNCTION`` (``fn(inputs, outputs)`` returns False or raises when wrong), or
``--expect MODULE:FUNCTION`` (``fn(inputs)`` returns the expected outputs).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "bench",
        help="load a model on a running Triton server, with checked responses",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("model", help="model name on the server")
    command.add_argument(
        "-u", "--url", help="server address (default: 127.0.0.1:8001 for grpc, :8000 for http)"
    )
    command.add_argument(
        "-i", "--protocol", choices=("grpc", "http"), default="grpc", help="default: %(default)s"
    )
    command.add_argument("--model-version", default="", help="model version (default: the server's choice)")
    command.add_argument(
        "-c",
        "--concurrency",
        default="1",
        type=parse_concurrency,
        help="concurrency, a list (1,8,32) or a doubling sweep (1:32); default: %(default)s",
    )
    command.add_argument(
        "-n", "--requests", type=int, help="requests per level (with -d, the first bound ends it)"
    )
    command.add_argument(
        "-d", "--duration", type=float, help="seconds per level (default 10 unless -n is given)"
    )
    command.add_argument("--warmup-requests", type=int, help="warm-up requests before each level")
    command.add_argument(
        "--warmup-seconds", type=float, help="warm-up seconds (default 1 unless --warmup-requests)"
    )
    command.add_argument(
        "-b", "--batch-size", type=int, default=1, help="rows per request (default: %(default)s)"
    )
    command.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=D1,D2",
        help="shape of an input with variable dims, without the batch axis (repeatable)",
    )
    command.add_argument("--inputs", metavar="MODULE:FUNCTION", help="fn(index) -> dict of input arrays")
    command.add_argument(
        "--check",
        default="reference",
        metavar="CHECK",
        help="reference | echo | none | MODULE:FUNCTION (default: %(default)s)",
    )
    command.add_argument(
        "--echo", action="append", default=[], metavar="OUT=IN", help="echo pair (implies --check echo)"
    )
    command.add_argument("--expect", metavar="MODULE:FUNCTION", help="fn(inputs) -> expected outputs")
    command.add_argument(
        "--reference", metavar="FILE.npz", help="compare with references saved by an earlier run"
    )
    command.add_argument("--save-reference", metavar="FILE.npz", help="save this run's reference outputs")
    command.add_argument(
        "--rtol", type=float, default=1e-4, help="relative tolerance for floats (default: %(default)s)"
    )
    command.add_argument(
        "--atol", type=float, default=1e-5, help="absolute tolerance for floats (default: %(default)s)"
    )
    command.add_argument("--pool", type=int, help="distinct input sets (default: max(64, 4 x concurrency))")
    command.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic inputs (default: %(default)s)"
    )
    command.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before a request counts as lost"
    )
    command.add_argument("-o", "--json", metavar="PATH", help="write the results as JSON")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.set_defaults(func=run)


def parse_concurrency(text: str) -> list[int]:
    """``"1,8,32"`` -> [1, 8, 32]; ``"1:32"`` -> [1, 2, 4, 8, 16, 32]."""
    try:
        if ":" in text:
            low_text, high_text = text.split(":", 1)
            low, high = int(low_text), int(high_text)
            if low < 1 or high < low:
                raise ValueError
            levels = []
            value = low
            while value < high:
                levels.append(value)
                value *= 2
            return [*levels, high]
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a list like 1,8,32 or a range like 1:32, got {text!r}"
        ) from None
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError(f"concurrency levels must be positive, got {text!r}")
    return levels


def _parse_shapes(entries: list[str]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for entry in entries:
        name, sep, dims = entry.partition("=")
        if not sep or not name:
            raise ValueError(f"--shape expects NAME=D1,D2, got {entry!r}")
        try:
            shapes[name] = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError:
            raise ValueError(f"--shape expects integer dims, got {entry!r}") from None
    return shapes


def _make_check(args: argparse.Namespace) -> Any:
    from ..bench import EchoCheck, ExpectedCheck, FunctionCheck, NoCheck, ReferenceCheck, load_callable

    if args.expect:
        return ExpectedCheck(load_callable(args.expect), rtol=args.rtol, atol=args.atol)
    if args.echo or args.check == "echo":
        pairs = {}
        for entry in args.echo:
            out, sep, inp = entry.partition("=")
            if not sep or not out or not inp:
                raise ValueError(f"--echo expects OUT=IN, got {entry!r}")
            pairs[out] = inp
        return EchoCheck(pairs or None)
    if args.check == "reference":
        return ReferenceCheck(rtol=args.rtol, atol=args.atol)
    if args.check == "none":
        return NoCheck()
    return FunctionCheck(load_callable(args.check))


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchError, BenchOptions, TransportError, WorkloadError, load_callable, run_bench

    try:
        duration = args.duration if args.duration is not None else (None if args.requests else 10.0)
        warmup_seconds = args.warmup_seconds
        if warmup_seconds is None and args.warmup_requests is None:
            warmup_seconds = 1.0
        options = BenchOptions(
            model=args.model,
            protocol=args.protocol,
            url=args.url,
            version=args.model_version,
            concurrency=args.concurrency,
            requests=args.requests,
            duration=duration,
            warmup_requests=args.warmup_requests,
            warmup_seconds=warmup_seconds,
            batch_size=args.batch_size,
            shapes=_parse_shapes(args.shape),
            pool_size=args.pool,
            seed=args.seed,
            timeout=args.timeout,
            progress=not args.no_progress,
        )
        check = _make_check(args)
        factory = load_callable(args.inputs) if args.inputs else None
        report = run_bench(
            options,
            inputs=factory,
            check=check,
            reference_path=args.reference,
            save_reference_path=args.save_reference,
        )
    except (BenchError, WorkloadError, TransportError, ValueError) as exc:
        print(f"pbkit bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pbkit bench: interrupted", file=sys.stderr)
        return 130
    print(report.table())
    if args.json:
        report.write_json(args.json)
        print(f"results written to {args.json}")
    return 1 if report.errors else 0
