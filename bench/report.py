"""Write ``docs/benchmarks.md`` and its PNG plots from the suite's results (``docs/benchmarks/results.json``).

``python bench/report.py`` rewrites the page from the saved results without measuring again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"

TARGETS = {
    "overhead": 0.95,
    "batching": 2.0,
    "limit": 0.8,
    "pytriton": 1.0,
}


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _plots(results: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """Draw the plots; returns {name: path relative to docs/}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=110)
        plt.close(fig)
        written[name] = f"{folder.name}/{name}.png"

    overhead = results["overhead"]["levels"]
    levels = list(overhead)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.38
    xs = range(len(levels))
    pbkit = [overhead[c]["identity_pbkit"]["throughput"] for c in levels]
    hand = [overhead[c]["identity_handwritten"]["throughput"] for c in levels]
    ax.bar([x - width / 2 for x in xs], pbkit, width, label="pbkit identity")
    ax.bar([x + width / 2 for x in xs], hand, width, label="hand-written model.py")
    for x, level, a, b in zip(xs, levels, pbkit, hand, strict=True):
        ratio = overhead[level]["ratio"]  # the median of adjacent-pair ratios, as in the tables
        ax.annotate(f"{ratio:.2f}x", (x, max(a, b)), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs), [f"concurrency {c}" for c in levels])
    ax.set_ylabel("requests/s (median)")
    ax.set_title("Overhead: identity model, gRPC")
    ax.legend(loc="upper left", fontsize=8)
    save(fig, "overhead")

    batching = results["embedding"]["batching"]
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    values = [batching["on"]["throughput"], batching["off"]["throughput"]]
    ax.bar(["dynamic batching on", "dynamic batching off"], values, color=["tab:blue", "tab:gray"])
    ax.set_ylabel("sentences/s (median)")
    ax.set_title(f"Embedding ensemble at concurrency {batching['concurrency']}: {batching['gain']:.1f}x")
    save(fig, "batching")

    limit = results["limit"]
    sizes = sorted(limit["forward_ms"], key=int)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    left.bar(
        ["served ensemble", "in-process encoder"],
        [limit["ensemble_sentences_per_s"], limit["limit_sentences_per_s"]],
        color=["tab:blue", "tab:green"],
    )
    left.set_ylabel("sentences/s")
    left.set_title(f"Against the limit: {limit['ratio']:.2f}")
    right.plot(
        [int(s) for s in sizes],
        [limit["forward_ms"][s] for s in sizes],
        "o-",
        label="in-process forward (fastest)",
    )
    served = limit["server_encoder_ms"]
    right.plot(
        [int(s) for s in sizes if s in served],
        [served[s] for s in sizes if s in served],
        "s--",
        label="served encoder (compute)",
    )
    right.set_xlabel("batch size")
    right.set_ylabel("ms per batch")
    right.legend(fontsize=8)
    right.set_title("Encoder time per batch")
    save(fig, "limit")

    comparison = results["embedding"].get("pytriton")
    if comparison:
        levels = list(comparison)
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
        xs = range(len(levels))
        for offset, side, label in (
            (-width / 2, "pbkit", "pbkit"),
            (width / 2, "pytriton", "PyTriton @batch"),
        ):
            left.bar(
                [x + offset for x in xs],
                [comparison[c][side]["throughput"] for c in levels],
                width,
                label=label,
            )
            right.bar(
                [x + offset for x in xs], [comparison[c][side]["p99_ms"] for c in levels], width, label=label
            )
        for axis, title, unit in ((left, "Throughput", "sentences/s"), (right, "p99 latency", "ms")):
            axis.set_xticks(list(xs), [f"concurrency {c}" for c in levels])
            axis.set_ylabel(unit)
            axis.set_title(f"MiniLM encoder: {title}")
            axis.legend(fontsize=8)
        save(fig, "pytriton")

    memory = results["overhead"]["memory"] + results["embedding"]["memory"]
    fig, ax = plt.subplots(figsize=(7.0, 0.38 * len(memory) + 1.0))
    labels = [f"{row['instance']} ({row['server']})" for row in memory]
    ax.barh(labels, [row["rss_mib"] for row in memory], color="tab:purple")
    ax.invert_yaxis()
    ax.set_xlabel("resident memory (VmRSS), MiB")
    ax.set_title("Memory per model instance process")
    ax.tick_params(axis="y", labelsize=8)
    save(fig, "memory")
    return written


def _machine(results: Mapping[str, Any]) -> list[str]:
    machine = results["machine"]
    before = results["load_average_before"]
    after = results["load_average_after"]
    return [
        f"- **Machine**: {machine.get('cpus')} CPU cores ({machine.get('processor')}), "
        f"{machine.get('memory_gib')} GiB memory, **no GPU** (CPU only); {machine.get('platform')}",
        f"- **Software**: Python {machine.get('python')}, {machine.get('tritonserver')} "
        "(the server bundled with nvidia-pytriton), tritonclient gRPC",
        f"- **Run**: {results['started']}, {results['duration_s'] / 60:.1f} minutes; "
        f"windows of {results['plan']['identity_seconds']:g} s (identity) and "
        f"{results['plan']['embedding_seconds']:g} s (embedding) after a warm-up, "
        f"{results['plan']['repeats']} (identity) and {results['plan'].get('embedding_repeats', results['plan']['repeats'])} "
        "(embedding) repetitions per side, alternating sides; medians reported, and each ratio is the median "
        "of the ratios of adjacent runs",
        f"- **Load average** (1/5/15 min) before: {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f}, "
        f"after: {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f} (each window's is in results.json). "
        "The load generator, tritonserver and every model process share the same 2 cores.",
    ] + [f"- **Environment**: {note}" for note in results.get("environment", [])]


def _harness(harness: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(summary cell, section lines) for the harness measurement."""
    if "missing" in harness:
        return "not measured", [f"Not measured: {harness['missing']}."]
    data = harness.get("data")
    if harness.get("returncode") or not data:
        tail = (harness.get("stderr") or harness.get("stdout") or "").strip().splitlines()[-5:]
        return "failed", ["`bench/harness_overhead.py` failed:", "", "```", *tail, "```"]
    lines = [
        "`bench/harness_overhead.py` times `LocalTriton.infer` (the in-process harness, no server) on the",
        "add_sub example with a 4-element tensor, against the model's own `execute` called directly (the floor).",
        "",
        "| Call | median µs | p10 µs | p90 µs |",
        "|---|---|---|---|",
    ]
    for name, row in data.get("results", {}).items():
        lines.append(f"| {name} | {row['median_us']:.1f} | {row['p10_us']:.1f} | {row['p90_us']:.1f} |")
    cell = f"{data['us_per_call']:.0f} µs per call" if "us_per_call" in data else "see section 5"
    if "overhead_median_us" in data:
        lines += [
            "",
            f"Harness overhead per `infer` over the bare `execute`: {data['overhead_median_us']:.1f} µs.",
        ]
        cell += f" ({data['overhead_median_us']:.0f} µs over the bare `execute`)"
    return cell, lines


def write_report(results: Mapping[str, Any], docs: Path) -> Path:
    """Write ``docs/benchmarks.md`` (and the plots under ``docs/benchmarks/``)."""
    plots = _plots(results, docs / "benchmarks")
    overhead = results["overhead"]["levels"]
    batching = results["embedding"]["batching"]
    limit = results["limit"]
    comparison = results["embedding"].get("pytriton") or {}
    harness_cell, harness_lines = _harness(results.get("harness", {}))

    ratios = {c: overhead[c]["ratio"] for c in overhead}
    overhead_ok = all(r >= TARGETS["overhead"] for r in ratios.values())
    pyt_ok = bool(comparison) and all(
        entry["ratio"] >= TARGETS["pytriton"] and entry["pbkit"]["p99_ms"] <= entry["pytriton"]["p99_ms"]
        for entry in comparison.values()
    )
    memory = results["overhead"]["memory"] + results["embedding"]["memory"]
    pbkit_rows = [
        row for row in memory if row["server"] != "PyTriton" and row["model"] != "identity_handwritten"
    ]

    lines = [
        "# Benchmarks",
        "",
        "Generated by `python bench/run.py` (see [Reproducing](#reproducing)); every number below comes from",
        "that one run against real tritonserver processes started by the suite. The raw results are in",
        "[`benchmarks/results.json`](benchmarks/results.json).",
        "",
        *_machine(results),
        "",
        "## Summary",
        "",
        "| Comparison | Measured | Target | Met |",
        "|---|---|---|---|",
        "| 1. Overhead: pbkit identity / hand-written `model.py`, throughput at concurrency "
        + ", ".join(overhead)
        + " | "
        + " / ".join(f"{ratios[c]:.2f}" for c in overhead)
        + f" | ≥ {TARGETS['overhead']} | {_met(overhead_ok)} |",
        f"| 2. Batching gain: embedding ensemble, dynamic batching on / off, concurrency {batching['concurrency']} "
        f"| {batching['gain']:.2f}x ({_fmt(batching['on']['throughput'])} vs {_fmt(batching['off']['throughput'])} "
        f"sentences/s) | ≥ {TARGETS['batching']:g}x | {_met(batching['gain'] >= TARGETS['batching'])} |",
        f"| 3. Against the limit: served ensemble / in-process encoder forward at the same batch sizes "
        f"| {limit['ratio']:.2f} ({_fmt(limit['ensemble_sentences_per_s'])} vs "
        f"{_fmt(limit['limit_sentences_per_s'])} sentences/s) | ≥ {TARGETS['limit']} "
        f"| {_met(limit['ratio'] >= TARGETS['limit'])} |",
    ]
    if comparison:
        lines.append(
            "| 4. Against PyTriton: pbkit / PyTriton `@batch` throughput (p99 pbkit vs PyTriton) at concurrency "
            + ", ".join(comparison)
            + " | "
            + "; ".join(
                f"{e['ratio']:.2f}x ({_fmt(e['pbkit']['p99_ms'], 0)} vs {_fmt(e['pytriton']['p99_ms'], 0)} ms)"
                for e in comparison.values()
            )
            + f" | ≥ {TARGETS['pytriton']:g}x, p99 no worse | {_met(pyt_ok)} |"
        )
    else:
        lines.append("| 4. Against PyTriton | not measured in this run | ≥ 1.0x | **no** |")
    lines += [
        f"| 5. Harness: cost of one `LocalTriton.infer` call | {harness_cell} | — | — |",
        "| 6. Memory: resident memory per model instance process | "
        + (
            f"{min(r['rss_mib'] for r in pbkit_rows):.0f}–{max(r['rss_mib'] for r in pbkit_rows):.0f} MiB "
            "per pbkit stub"
            if pbkit_rows
            else "not measured"
        )
        + " | — | — |",
        "",
        "Every response of every run was checked against its own request (identity: output equals input;",
        "embeddings: equal, within 1e-3 relative / 1e-4 absolute, to the embedding computed in-process for",
        "that sentence); a wrong, lost or failed response counts as an error. Errors over the whole run: "
        f"**{_total_errors(results)}**.",
        "",
    ]
    if ANALYSIS.is_file():
        lines += [ANALYSIS.read_text(encoding="utf-8").rstrip(), ""]

    lines += _overhead_section(results, plots)
    lines += _batching_section(results, plots)
    lines += _limit_section(results, plots)
    lines += _pytriton_section(results, plots)
    lines += ["## 5. Harness", "", *harness_lines, ""]
    lines += _memory_section(memory, plots)
    lines += _reproducing()
    target = docs / "benchmarks.md"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def _total_errors(results: Mapping[str, Any]) -> int:
    total = 0
    for level in results["overhead"]["levels"].values():
        total += level["identity_pbkit"]["errors"] + level["identity_handwritten"]["errors"]
    batching = results["embedding"]["batching"]
    total += batching["on"]["errors"] + batching["off"]["errors"]
    for entry in (results["embedding"].get("pytriton") or {}).values():
        total += entry["pbkit"]["errors"] + entry["pytriton"]["errors"]
    return total


def _overhead_section(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    levels = results["overhead"]["levels"]
    lines = [
        "## 1. Overhead",
        "",
        "`identity_pbkit` (`bench/models/identity/identity_model.py`, a pbkit model returning its input) against",
        "`identity_handwritten` (`bench/models/handwritten_identity/model.py`, the minimal hand-written Python-backend",
        "model doing the same), served side by side by one tritonserver with the same `config.pbtxt` (pbkit's,",
        "renamed): FP32 `[1, 16]` requests, `max_batch_size: 64`, `dynamic_batching {}`. CPU is the user+system",
        "time of the model's stub process (and of tritonserver) during the window, per request: it depends much",
        "less than throughput on what else the machine was doing.",
        "",
        "| Concurrency | pbkit req/s | hand-written req/s | ratio | ratio per repetition | p99 ms pbkit / hand-written "
        "| stub CPU µs/req pbkit / hand-written | tritonserver CPU µs/req pbkit / hand-written |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for concurrency, entry in levels.items():
        pbkit, hand = entry["identity_pbkit"], entry["identity_handwritten"]
        lines.append(
            f"| {concurrency} | {_fmt(pbkit['throughput'])} | {_fmt(hand['throughput'])} | {entry['ratio']:.2f} | "
            + ", ".join(f"{r:.2f}" for r in entry["ratio_per_repeat"])
            + f" | {pbkit['p99_ms']:.2f} / {hand['p99_ms']:.2f} | "
            f"{pbkit['cpu_us_per_request']['stub']:.0f} / {hand['cpu_us_per_request']['stub']:.0f} | "
            f"{pbkit['cpu_us_per_request']['tritonserver']:.0f} / {hand['cpu_us_per_request']['tritonserver']:.0f} |"
        )
    lines += ["", f"![Overhead]({plots['overhead']})", ""]
    return lines


def _batching_section(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    batching = results["embedding"]["batching"]
    executions = results["embedding"]["encoder_batches"]["executions"]
    on, off = batching["on"], batching["off"]
    total = sum(executions.values())
    rows = sum(int(size) * count for size, count in executions.items())
    return [
        "## 2. Batching gain",
        "",
        "The `embedding` ensemble of `models/ensemble_embedding/` (tokenizer → encoder → pooling, built with",
        "`pbkit.build.build`), against a copy whose three steps have `dynamic_batching` removed (the built configs",
        "parsed, edited and rendered through the protobuf), both loaded in one server. One sentence per request,",
        f"{batching['concurrency']} requests in flight.",
        "",
        "| Ensemble | sentences/s | p50 ms | p90 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
        f"| dynamic batching on | {_fmt(on['throughput'])} | {on['p50_ms']:.0f} | {on['p90_ms']:.0f} | "
        f"{on['p99_ms']:.0f} | {on['errors']} |",
        f"| dynamic batching off | {_fmt(off['throughput'])} | {off['p50_ms']:.0f} | {off['p90_ms']:.0f} | "
        f"{off['p99_ms']:.0f} | {off['errors']} |",
        "",
        f"Gain: **{batching['gain']:.2f}x** (per repetition: "
        + ", ".join(f"{g:.2f}" for g in batching.get("gain_per_repeat", []))
        + f"). With batching on, the encoder ran {total} batches for {rows} sentences "
        f"(mean {rows / max(total, 1):.1f} per batch). CPU time of all the ensemble's model processes and "
        f"tritonserver per sentence: {on.get('server_cpu_ms_per_request', 0):.1f} ms with batching, "
        f"{off.get('server_cpu_ms_per_request', 0):.1f} ms without.",
        "",
        f"![Batching gain]({plots['batching']})",
        "",
    ]


def _limit_section(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    limit = results["limit"]
    lines = [
        "## 3. Against the limit",
        "",
        "The limit is the encoder alone, in the benchmark's own process, with no server in the way: the",
        "ensemble's own encoder network (`models/ensemble_embedding/network.py`, the checkpoint, the tokenizer's",
        "fixed-length padding, trimmed to the longest sentence) timed at exactly the batch sizes the served encoder",
        "ran during the batching-on windows, each timed right after its window (the server idle; torch with",
        f"{limit['torch_threads']} threads, like the served one). Limit throughput = sentences of those batches /",
        "the time the in-process forward takes for them, taking for each batch size the fastest forward seen",
        "(load from other processes only ever adds time, so this is the encoder's best). Tokenizer, pooling, the",
        "ensemble scheduler, gRPC and the load generator are all outside the limit and inside the served number.",
        "",
        f"Served ensemble **{_fmt(limit['ensemble_sentences_per_s'])}** sentences/s (median), limit "
        f"**{_fmt(limit['limit_sentences_per_s'])}** sentences/s: ratio **{limit['ratio']:.2f}**. Each served "
        "run against the limit timed right after it (mean forward times): "
        + ", ".join(f"{r:.2f}" for r in limit.get("paired_ratio_per_repeat", []))
        + ".",
        "",
        "In CPU time: the in-process forward took "
        f"{limit.get('forward_cpu_ms_per_sentence', 0):.1f} ms per sentence; the served ensemble "
        f"{results['embedding']['batching']['on'].get('server_cpu_ms_per_request', 0):.1f} ms per sentence over "
        "all its model processes and tritonserver (the load generator not counted).",
        "",
        "| Batch size | batches run by the served encoder | fastest in-process forward ms "
        "| served encoder compute ms (mean) |",
        "|---|---|---|---|",
    ]
    for size in sorted(limit["forward_ms"], key=int):
        served = limit["server_encoder_ms"].get(size)
        lines.append(
            f"| {size} | {limit['executions'].get(size, 0)} | {limit['forward_ms'][size]:.1f} | "
            + (f"{served:.1f}" if served is not None else "—")
            + " |"
        )
    lines += ["", f"![Against the limit]({plots['limit']})", ""]
    return lines


def _pytriton_section(results: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    comparison = results["embedding"].get("pytriton")
    lines = ["## 4. Against PyTriton", ""]
    if not comparison:
        return [*lines, "Not measured in this run.", ""]
    lines += [
        "The same code (`bench/models/minilm/minilm_encoder.py`: tokenizer, MiniLM encoder, mean pooling, L2",
        "normalisation, torch on the CPU) served twice, one sentence per request: as the pbkit model",
        "`minilm_pbkit` (`bench/models/minilm/minilm_model.py`) in the suite's tritonserver, and as PyTriton's",
        "`@batch` function (`bench/pytriton_minilm.py`, nvidia-pytriton 0.7.0, which starts the same bundled",
        "tritonserver and relays each batch from its Python-backend proxy to the process holding the model).",
        "Both: max batch size 64, max queue delay 2000 µs, one instance. Both servers were up during the whole",
        "comparison and the runs alternated between them.",
        "",
        "| Concurrency | pbkit sentences/s | PyTriton sentences/s | ratio | ratio per repetition "
        "| p50 ms pbkit / PyTriton | p99 ms pbkit / PyTriton |",
        "|---|---|---|---|---|---|---|",
    ]
    for concurrency, entry in comparison.items():
        pbkit, pyt = entry["pbkit"], entry["pytriton"]
        lines.append(
            f"| {concurrency} | {_fmt(pbkit['throughput'])} | {_fmt(pyt['throughput'])} | {entry['ratio']:.2f} | "
            + ", ".join(f"{r:.2f}" for r in entry.get("ratio_per_repeat", []))
            + f" | {pbkit['p50_ms']:.1f} / {pyt['p50_ms']:.1f} | {pbkit['p99_ms']:.1f} / {pyt['p99_ms']:.1f} |"
        )
    lines += ["", f"![Against PyTriton]({plots['pytriton']})", ""]
    return lines


def _memory_section(memory: Sequence[Mapping[str, Any]], plots: Mapping[str, str]) -> list[str]:
    lines = [
        "## 6. Memory",
        "",
        "VmRSS (from `/proc/<pid>/status`) of every `triton_python_backend_stub` process of the servers the suite",
        "started, one per model instance, read after the load; for PyTriton also the Python process that holds",
        "its model. Shared pages (the torch libraries) are counted in every process that maps them.",
        "",
        "| Server | Model | Instance process | RSS MiB |",
        "|---|---|---|---|",
    ]
    for row in memory:
        lines.append(f"| {row['server']} | {row['model']} | {row['instance']} | {row['rss_mib']:.0f} |")
    lines += ["", f"![Memory]({plots['memory']})", ""]
    return lines


def _reproducing() -> list[str]:
    return [
        "## Reproducing",
        "",
        "```",
        ". .venv/bin/activate",
        "python bench/run.py            # about 10 minutes; rewrites this page, its plots and results.json",
        "python bench/run.py --quick    # the same steps with short windows",
        "python bench/report.py         # this page again from docs/benchmarks/results.json",
        "python bench/profile_runtime.py -c 1,8,32 -d 8   # execute CPU per request inside each stub (needs py-spy)",
        "python bench/runtime_microbench.py              # the Python of execute alone, warm and in-process",
        "```",
        "",
        "Single measurements use the load generator directly, against any running server:",
        "",
        "```",
        "pbkit bench embedding -u 127.0.0.1:8001 -c 1,8,32 -d 10 -o embedding.json",
        "pbkit bench identity_pbkit --shape INPUT=16 --check echo -c 1:32 -n 5000",
        "```",
        "",
        "`pbkit bench` checks every response against its own request (`--check reference|echo|none|MODULE:FUNC`,",
        "`--expect MODULE:FUNC`) and exits with status 1 if any response was wrong, lost or failed.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    results = json.loads((args.docs / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    print(write_report(results, args.docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
