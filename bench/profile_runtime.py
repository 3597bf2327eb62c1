"""Where the pbkit runtime spends its time per request, next to the minimal hand-written model.

::

    pip install py-spy                      # the sampling profiler (not a pbkit dependency)
    python bench/profile_runtime.py         # concurrency 1 and 8, 10 s each
    python bench/profile_runtime.py -c 32 -d 20 --json profile.json

Serves the overhead pair of the suite (``identity_pbkit`` and ``identity_handwritten``, same
config) and, for each model and concurrency:

* counts the CPU time of ``execute`` itself per request: each temporary copy of ``model.py`` wraps
  ``TritonPythonModel.execute`` to add up ``time.thread_time_ns()`` (CPU of the stub's thread, so
  other load on the machine does not inflate it);
* samples the stub with py-spy while the load runs and lists the functions by share of the samples
  spent in Python (file, function; self and inclusive).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import measure, prepare_environment
from run import POOL_SIZE, build_identity_repository

from pbkit.bench import EchoCheck
from pbkit.bench.workload import ModelInfo, TensorInfo, synthetic_inputs
from pbkit.testing.server import TritonServer

MODELS = ("identity_pbkit", "identity_handwritten")
_TIMED_EXECUTE = """

# Added by bench/profile_runtime.py: CPU time of execute, per request.
import time as _profile_time

_profile_execute = TritonPythonModel.execute
_profile_totals = [0, 0, 0]


def _profiled_execute(self, requests):
    start = _profile_time.thread_time_ns()
    try:
        return _profile_execute(self, requests)
    finally:
        _profile_totals[0] += _profile_time.thread_time_ns() - start
        _profile_totals[1] += 1
        _profile_totals[2] += len(requests)
        if _profile_totals[1] % 100 == 0:
            with open({path!r}, "w") as _file:
                _file.write(" ".join(str(value) for value in _profile_totals))


TritonPythonModel.execute = _profiled_execute
"""


def instrument(repository: Path, totals_dir: Path) -> None:
    """Append the execute timer to each model's ``model.py`` in ``repository``."""
    for model in MODELS:
        source = repository / model / "1" / "model.py"
        path = str(totals_dir / f"{model}.totals")
        source.write_text(
            source.read_text(encoding="utf-8") + _TIMED_EXECUTE.format(path=path), encoding="utf-8"
        )


def read_totals(path: Path) -> tuple[int, int, int]:
    try:
        ns, calls, requests = (int(value) for value in path.read_text().split())
    except (OSError, ValueError):
        return 0, 0, 0
    return ns, calls, requests


def aggregate(raw: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares of the Python samples per (file, function) from py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [frame.strip() for frame in stack.split(";") if frame.strip() and frame.strip() != "()"]
        if not frames or not count_text.isdigit():
            continue  # the stub waiting in C++ for the next message: no Python frame
        count = int(count_text)
        total += count
        keys = []
        for frame in frames:
            name, _, where = frame.partition(" (")
            file = where.rstrip(")").rsplit(":", 1)[0]
            short = "/".join(Path(file).parts[-3:]) if "pbkit" in file else Path(file).name
            keys.append(f"{short}: {name}")
        own[keys[-1]] += count
        for key in set(keys):
            inclusive[key] += count
    share = 100.0 / max(total, 1)
    return {
        "self": [(key, value * share) for key, value in own.most_common(top)],
        "inclusive": [(key, value * share) for key, value in inclusive.most_common(top)],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c", "--concurrency", default="1,8", help="levels, e.g. 1,8,32 (default: %(default)s)"
    )
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds per model and level")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15, help="functions listed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    prepare_environment()
    levels = [int(level) for level in args.concurrency.split(",")]
    inputs = synthetic_inputs(ModelInfo("identity", 64, (TensorInfo("INPUT", "FP32", (16,)),), ()))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pbkit-profile-") as tmp:
        work = Path(tmp)
        repository = work / "identity"
        build_identity_repository(repository)
        instrument(repository, work)
        with TritonServer(repository) as server:
            stubs = {stub.model: stub.pid for stub in server.process.stub_processes()}
            for level in levels:
                for model in MODELS:
                    raw = work / f"{model}-{level}.txt"
                    totals = work / f"{model}.totals"
                    measure(
                        model,
                        url=server.grpc_url,
                        model=model,
                        concurrency=level,
                        duration=1.0,
                        warmup=0,
                        inputs=inputs,
                        check=EchoCheck(),
                        pool_size=POOL_SIZE,
                    )
                    before = read_totals(totals)
                    spy = subprocess.Popen(
                        [
                            py_spy,
                            "record",
                            "--pid",
                            str(stubs[model]),
                            "--rate",
                            str(args.rate),
                            "--duration",
                            str(int(args.duration)),
                            "--format",
                            "raw",
                            "--output",
                            str(raw),
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(0.5)
                    measured = measure(
                        model,
                        url=server.grpc_url,
                        model=model,
                        concurrency=level,
                        duration=args.duration - 1.0,
                        warmup=0,
                        inputs=inputs,
                        check=EchoCheck(),
                        pool_size=POOL_SIZE,
                    )
                    spy.wait()
                    time.sleep(0.3)
                    after = read_totals(totals)
                    ns, calls, requests = (b - a for a, b in zip(before, after, strict=True))
                    entry: dict[str, Any] = {
                        "requests_per_s": measured.throughput,
                        "execute_cpu_us_per_request": ns / max(requests, 1) / 1e3,
                        "requests_per_execute": requests / max(calls, 1),
                    }
                    if raw.is_file():
                        entry["py_spy"] = aggregate(raw, args.top)
                    results[f"{model} c={level}"] = entry
    for name, entry in results.items():
        print(
            f"\n== {name}: execute CPU {entry['execute_cpu_us_per_request']:.1f} µs/request, "
            f"{entry['requests_per_execute']:.2f} requests per execute, {entry['requests_per_s']:.0f} req/s"
        )
        for kind in ("self", "inclusive"):
            print(f"   {kind} (% of samples in Python):")
            for key, value in entry.get("py_spy", {}).get(kind, []):
                print(f"     {value:5.1f}%  {key}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
