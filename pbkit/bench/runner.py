"""The async load generator: fixed concurrency or a sweep, warm-up, bounds, checked responses.

For each concurrency level ``c``, ``c`` workers each send one request, wait for its response,
check it, and send the next, until the level's bound is reached (``requests`` sent, or
``duration`` seconds passed, whichever comes first); requests in flight then finish and count.
A warm-up phase with the same workers runs before each level and is not measured. Throughput is
correct responses divided by the time from the level's start to its last response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .checks import ReferenceCheck, ResponseCheck
from .results import BenchReport, LatencySummary, LevelResult
from .transport import DEFAULT_URLS, ModelStats, Transport, TransportError, open_transport
from .workload import InputFactory, ModelInfo, make_pool, synthetic_inputs

__all__ = ["BenchError", "BenchOptions", "run_bench", "run_bench_async"]

_TICK_SECONDS = 0.2


class BenchError(RuntimeError):
    """The benchmark could not run (model unknown, reference pass failed, bad options)."""


@dataclass
class BenchOptions:
    """How to load one model. ``requests`` and ``duration`` bound each level; the first reached ends it."""

    model: str
    protocol: str = "grpc"
    url: str | None = None
    version: str = ""
    concurrency: Sequence[int] = (1,)
    requests: int | None = None
    duration: float | None = 10.0
    warmup_requests: int | None = None
    warmup_seconds: float | None = 1.0
    batch_size: int = 1
    shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    pool_size: int | None = None
    """Distinct input sets; default max(64, 4 x the largest concurrency)."""
    seed: int = 0
    timeout: float = 60.0
    """Seconds a request may take before it counts as lost."""
    progress: bool = True

    def validate(self) -> None:
        """Raise BenchError for options that cannot work."""
        if self.protocol not in DEFAULT_URLS:
            raise BenchError(f"unknown protocol {self.protocol!r}; expected grpc or http")
        if not self.concurrency or any(int(c) < 1 for c in self.concurrency):
            raise BenchError("concurrency levels must be positive integers")
        if self.requests is None and self.duration is None:
            raise BenchError("give a request count, a duration, or both")
        if self.requests is not None and self.requests < 1:
            raise BenchError("the request count must be at least 1")
        if self.duration is not None and self.duration <= 0:
            raise BenchError("the duration must be positive")
        if self.pool_size is not None and self.pool_size < 1:
            raise BenchError("the pool size must be at least 1")

    @property
    def effective_pool_size(self) -> int:
        return self.pool_size or max(64, 4 * max(int(c) for c in self.concurrency))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["concurrency"] = [int(c) for c in self.concurrency]
        data["shapes"] = {name: list(dims) for name, dims in self.shapes.items()}
        data["pool_size"] = self.effective_pool_size
        data["url"] = self.url or DEFAULT_URLS.get(self.protocol, "")
        return data


@dataclass
class _Phase:
    """Counters of one running phase."""

    issued: int = 0
    answered: int = 0
    ok: int = 0
    rows: int = 0
    failed: int = 0
    mismatched: int = 0
    latencies: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    started: float = 0.0
    last_answer: float = 0.0

    def sample(self, message: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(message)


class _Runner:
    def __init__(
        self,
        options: BenchOptions,
        transport: Transport,
        pool: list[dict[str, np.ndarray]],
        rows: list[int],
        check: ResponseCheck,
    ) -> None:
        self.options = options
        self.transport = transport
        self.pool = pool
        self.rows = rows
        self.prepared = [transport.prepare(entry) for entry in pool]
        self.check = check
        self.next_index = 0

    async def reference_pass(self) -> list[dict[str, np.ndarray]]:
        """One request at a time for every pool entry: the outputs later responses must match."""
        references = []
        for entry in range(len(self.pool)):
            index = self.next_index
            self.next_index += 1
            try:
                outputs, _ = await self.transport.infer(
                    self.options.model, self.prepared[entry], str(index), self.options.version
                )
            except TransportError as exc:
                raise BenchError(f"reference request {entry} failed: {exc}") from exc
            references.append(outputs)
        return references

    async def phase(
        self, concurrency: int, max_requests: int | None, max_seconds: float | None, label: str
    ) -> _Phase:
        state = _Phase()
        if max_requests is not None and max_requests <= 0:
            return state
        if max_requests is None and (max_seconds is None or max_seconds <= 0):
            return state
        options = self.options
        pool_size = len(self.pool)
        state.started = time.perf_counter()
        deadline = None if max_seconds is None else state.started + max_seconds

        async def worker() -> None:
            while True:
                if max_requests is not None and state.issued >= max_requests:
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                state.issued += 1
                index = self.next_index
                self.next_index += 1
                entry = index % pool_size
                request_id = str(index)
                sent = time.perf_counter()
                try:
                    outputs, response_id = await self.transport.infer(
                        options.model, self.prepared[entry], request_id, options.version
                    )
                except TransportError as exc:
                    state.last_answer = time.perf_counter()
                    state.answered += 1
                    state.failed += 1
                    state.sample(f"request {index}: {exc}")
                    continue
                answered = time.perf_counter()
                state.last_answer = answered
                state.answered += 1
                if response_id != request_id:
                    reason: str | None = f"response carries request id {response_id!r}"
                else:
                    reason = self.check.check(entry, self.pool[entry], outputs)
                if reason is None:
                    state.ok += 1
                    state.rows += self.rows[entry]
                    state.latencies.append(answered - sent)
                else:
                    state.mismatched += 1
                    state.sample(f"request {index} (pool entry {entry}): {reason}")

        bar = _progress_bar(options.progress, label, max_requests, max_seconds)
        ticker = asyncio.create_task(_tick(bar, state, max_requests, deadline)) if bar is not None else None
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            if ticker is not None:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
            if bar is not None:
                _update_bar(bar, state, max_requests, deadline)
                bar.close()
        return state

    async def level(self, concurrency: int) -> LevelResult:
        options = self.options
        key = options.model if options.version in ("", "1") else f"{options.model}:{options.version}"
        start = await _statistics(self.transport)
        warmup = await self.phase(
            concurrency, options.warmup_requests, options.warmup_seconds, f"warm-up  c={concurrency}"
        )
        # The server counts a request only after its response went out, so a client can see its last
        # answers before the server has counted them: wait for the count before each snapshot.
        before = await _statistics_counting(self.transport, key, start, warmup.answered)
        measured = await self.phase(
            concurrency, options.requests, options.duration, f"measure  c={concurrency}"
        )
        after = await _statistics_counting(self.transport, key, before, measured.answered)
        duration = max(measured.last_answer - measured.started, 0.0)
        server: dict[str, Any] = {}
        for name, stats in after.items():
            delta = stats.minus(before.get(name, ModelStats()))
            if delta.execution_count > 0:
                server[name] = delta.to_json()
        return LevelResult(
            concurrency=concurrency,
            requests=measured.answered,
            ok=measured.ok,
            failed=measured.failed,
            mismatched=measured.mismatched,
            duration_s=duration,
            rows=measured.rows,
            latency_ms=LatencySummary.of(measured.latencies),
            warmup_requests=warmup.answered,
            warmup_errors=warmup.failed + warmup.mismatched,
            error_samples=list(measured.samples),
            server=server,
        )


async def _statistics(transport: Transport) -> dict[str, ModelStats]:
    try:
        return await transport.statistics()
    except Exception:
        return {}


async def _statistics_counting(
    transport: Transport, key: str, earlier: Mapping[str, ModelStats], answered: int, timeout: float = 5.0
) -> dict[str, ModelStats]:
    """Statistics once the server has counted the ``answered`` requests of model ``key`` made since
    ``earlier`` (or ``timeout`` passed), and the counts of every model have stopped changing."""
    deadline = time.monotonic() + timeout
    while True:
        current = await _statistics(transport)
        stats = current.get(key)
        if stats is None:  # the server keeps no statistics for it: settling is all there is
            break
        done = stats.minus(earlier.get(key, ModelStats()))
        if done.success_count + done.fail_count >= answered or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.02)
    return await _settled_statistics(transport)


async def _settled_statistics(transport: Transport, attempts: int = 10) -> dict[str, ModelStats]:
    """Statistics once they stop changing: the server counts a request after its response is sent."""
    current = await _statistics(transport)
    for _ in range(attempts):
        await asyncio.sleep(0.05)
        latest = await _statistics(transport)
        if latest == current:
            break
        current = latest
    return current


def _progress_bar(enabled: bool, label: str, max_requests: int | None, max_seconds: float | None) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    if max_requests is not None:
        return tqdm(total=max_requests, desc=label, unit="req", leave=False, dynamic_ncols=True)
    return tqdm(
        total=round(max_seconds or 0.0, 1),
        desc=label,
        unit="s",
        leave=False,
        dynamic_ncols=True,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s {postfix}",
    )


def _update_bar(bar: Any, state: _Phase, max_requests: int | None, deadline: float | None) -> None:
    if max_requests is not None:
        bar.n = min(state.answered, max_requests)
    elif deadline is not None:
        bar.n = round(min(time.perf_counter() - state.started, bar.total), 1)
    elapsed = max(time.perf_counter() - state.started, 1e-9)
    bar.set_postfix_str(
        f"{state.answered / elapsed:.0f} req/s, errors {state.failed + state.mismatched}", refresh=False
    )
    bar.refresh()


async def _tick(bar: Any, state: _Phase, max_requests: int | None, deadline: float | None) -> None:
    while True:
        await asyncio.sleep(_TICK_SECONDS)
        _update_bar(bar, state, max_requests, deadline)


def _rows_of(entry: Mapping[str, np.ndarray], model: ModelInfo) -> int:
    if model.max_batch_size <= 0 or not entry:
        return 1
    first = next(iter(entry.values()))
    return int(first.shape[0]) if first.ndim else 1


async def run_bench_async(
    options: BenchOptions,
    *,
    inputs: InputFactory | None = None,
    check: ResponseCheck | None = None,
    reference_path: str | None = None,
    save_reference_path: str | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
    transport: Transport | None = None,
) -> BenchReport:
    """Run the benchmark described by ``options``; see :func:`run_bench`."""
    options.validate()
    owned = transport is None
    if transport is None:
        transport = open_transport(
            options.protocol,
            options.url,
            timeout=options.timeout,
            connections=max(100, max(int(c) for c in options.concurrency)),
        )
    try:
        try:
            config = await transport.model_config(options.model, options.version)
        except TransportError as exc:
            raise BenchError(
                f"cannot read the config of model '{options.model}' at {transport.url}: {exc}"
            ) from exc
        model = ModelInfo.from_config(config)
        factory = inputs or synthetic_inputs(
            model, batch_size=options.batch_size, shapes=options.shapes, seed=options.seed
        )
        pool = make_pool(factory, options.effective_pool_size)
        check = check if check is not None else ReferenceCheck()
        runner = _Runner(options, transport, pool, [_rows_of(entry, model) for entry in pool], check)
        reference_requests = 0
        if isinstance(check, ReferenceCheck) and check.references is None:
            if reference_path is not None:
                from .checks import load_reference

                check.references = load_reference(reference_path, pool)
            else:
                check.references = await runner.reference_pass()
                reference_requests = len(pool)
        if save_reference_path is not None:
            if not isinstance(check, ReferenceCheck) or check.references is None:
                raise BenchError("saving references needs the reference check")
            from .checks import save_reference

            save_reference(save_reference_path, pool, check.references)
        report = BenchReport(
            model=options.model,
            protocol=options.protocol,
            url=transport.url,
            check=check.name,
            options=options.to_json(),
            reference_requests=reference_requests,
        )
        for concurrency in options.concurrency:
            level = await runner.level(int(concurrency))
            report.levels.append(level)
            if on_level is not None:
                on_level(level)
        return report
    finally:
        if owned:
            await transport.close()


def run_bench(
    options: BenchOptions,
    *,
    inputs: InputFactory | None = None,
    check: ResponseCheck | None = None,
    reference_path: str | None = None,
    save_reference_path: str | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
    transport: Transport | None = None,
) -> BenchReport:
    """Load ``options.model`` at each concurrency level and return what was measured.

    ``inputs`` makes pool entry ``k``'s inputs (default: seeded synthetic inputs from the model's
    config); ``check`` judges each response (default: :class:`ReferenceCheck`, whose references come
    from one-at-a-time requests before the load, or from ``reference_path``, saved by an earlier run
    with ``save_reference_path``). ``on_level`` is called after each level. ``transport`` replaces the
    tritonclient connection made from ``options.protocol`` and ``options.url`` (the caller closes it).
    """
    return asyncio.run(
        run_bench_async(
            options,
            inputs=inputs,
            check=check,
            reference_path=reference_path,
            save_reference_path=save_reference_path,
            on_level=on_level,
            transport=transport,
        )
    )
