"""``pb_utils.Logger`` and custom metrics (``MetricFamily``/``Metric``) with the server's rules."""

from __future__ import annotations

import enum
import itertools
import json
import logging
import math
import re
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from . import context
from .errors import TritonModelException, incompatible_arguments

_log = logging.getLogger("pbkit.testing.triton")


class LogLevel(enum.IntEnum):
    """``Logger.LogLevel``."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


_PY_LEVELS = {
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.VERBOSE: logging.DEBUG,
}


class Logger:
    """Writes to the server log; in-process, to :attr:`LocalTriton.logs` and the ``pbkit.testing.triton`` logger."""

    LogLevel = LogLevel
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(message: str, level: LogLevel = LogLevel.INFO) -> None:
        """Log ``message`` at ``level``."""
        if not isinstance(message, str) or not isinstance(level, LogLevel):
            raise TypeError(
                "log(): incompatible function arguments. The following argument types are supported:\n"
                "    1. (message: str, level: c_python_backend_utils.Logger.LogLevel = <LogLevel.INFO: 0>) -> None"
            )
        instance = context.current_instance()
        host = context.current_host()
        if host is not None:
            host.log(instance, int(level), message)
        else:
            _log.log(_PY_LEVELS[level], message)

    @staticmethod
    def log_info(message: str) -> None:
        """Log at INFO."""
        Logger.log(message, LogLevel.INFO)

    @staticmethod
    def log_warn(message: str) -> None:
        """Log at WARNING."""
        Logger.log(message, LogLevel.WARNING)

    @staticmethod
    def log_error(message: str) -> None:
        """Log at ERROR."""
        Logger.log(message, LogLevel.ERROR)

    @staticmethod
    def log_verbose(message: str) -> None:
        """Log at VERBOSE."""
        Logger.log(message, LogLevel.VERBOSE)


class MetricKind(enum.IntEnum):
    """``MetricFamily.COUNTER`` / ``GAUGE`` / ``HISTOGRAM``."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


_KIND_NAMES = {
    MetricKind.COUNTER: "TRITONSERVER_METRIC_KIND_COUNTER",
    MetricKind.GAUGE: "TRITONSERVER_METRIC_KIND_GAUGE",
    MetricKind.HISTOGRAM: "TRITONSERVER_METRIC_KIND_HISTOGRAM",
}
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass
class MetricState:
    """One metric's value (counter, gauge) or observations (histogram)."""

    labels: dict[str, str]
    value: float = 0.0
    buckets: list[float] | None = None
    bucket_counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0


@dataclass
class FamilyState:
    """A metric family in the server's registry."""

    name: str
    description: str
    kind: MetricKind
    metrics: dict[str, MetricState] = field(default_factory=dict)
    handles: int = 0


class MetricRegistry:
    """The custom metrics of one server; read them with :meth:`value` or :meth:`histogram`."""

    def __init__(self) -> None:
        self._families: dict[str, FamilyState] = {}
        self._lock = threading.Lock()

    def _acquire_family(self, name: str, description: str, kind: MetricKind) -> FamilyState:
        with self._lock:
            family = self._families.get(name)
            if family is not None and family.kind != kind:
                raise ValueError("Family name already exists with different type")
            if family is None:
                family = self._families[name] = FamilyState(name, description, kind)
            family.handles += 1
            return family

    def _release_family(self, family: FamilyState) -> None:
        with self._lock:
            family.handles -= 1
            if family.handles <= 0 and self._families.get(family.name) is family:
                del self._families[family.name]

    def families(self) -> list[str]:
        """Names of the registered families."""
        with self._lock:
            return sorted(self._families)

    def _metric(self, family: str, labels: dict[str, str] | None) -> MetricState:
        key = json.dumps(labels or {}, sort_keys=True)
        with self._lock:
            state = self._families.get(family)
            if state is None or key not in state.metrics:
                raise KeyError(f"no metric {family}{labels or {}} is registered")
            return state.metrics[key]

    def value(self, family: str, labels: dict[str, str] | None = None) -> float:
        """The value of a counter or gauge."""
        return self._metric(family, labels).value

    def histogram(self, family: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A histogram's ``count``, ``sum`` and cumulative ``buckets`` (upper bound → count)."""
        state = self._metric(family, labels)
        cumulative, running = {}, 0
        for bound, count in zip(state.buckets or [], state.bucket_counts, strict=False):
            running += count
            cumulative[bound] = running
        cumulative[math.inf] = state.count
        return {"count": state.count, "sum": state.total, "buckets": cumulative}

    def text(self) -> str:
        """The registry in Prometheus text format (custom metrics only)."""
        lines: list[str] = []
        with self._lock:
            families = list(self._families.values())
        for family in families:
            kind = {
                MetricKind.COUNTER: "counter",
                MetricKind.GAUGE: "gauge",
                MetricKind.HISTOGRAM: "histogram",
            }
            lines.append(f"# HELP {family.name} {family.description}")
            lines.append(f"# TYPE {family.name} {kind[family.kind]}")
            for metric in family.metrics.values():
                labels = ",".join(f'{k}="{v}"' for k, v in metric.labels.items())
                if family.kind != MetricKind.HISTOGRAM:
                    lines.append(f"{family.name}{{{labels}}} {_number(metric.value)}")
                    continue
                running = 0
                for bound, count in zip(metric.buckets or [], metric.bucket_counts, strict=False):
                    running += count
                    le = ",".join(x for x in (labels, f'le="{_number(bound)}"') if x)
                    lines.append(f"{family.name}_bucket{{{le}}} {running}")
                le = ",".join(x for x in (labels, 'le="+Inf"') if x)
                lines.append(f"{family.name}_bucket{{{le}}} {metric.count}")
                lines.append(f"{family.name}_sum{{{labels}}} {_number(metric.total)}")
                lines.append(f"{family.name}_count{{{labels}}} {metric.count}")
        return "\n".join(lines) + ("\n" if lines else "")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _instance_name() -> str:
    instance = context.current_instance()
    return instance.instance_name if instance is not None else "<unknown>"


def _server_error(prefix: str, message: str) -> TritonModelException:
    return TritonModelException(
        f"{prefix}Failed to process the request for model '{_instance_name()}', message: {message}"
    )


class MetricFamily:
    """``MetricFamily(name, description, kind)``: a family of metrics sharing a name and kind."""

    COUNTER = MetricKind.COUNTER
    GAUGE = MetricKind.GAUGE
    HISTOGRAM = MetricKind.HISTOGRAM

    def __init__(self, name: str, description: str, kind: MetricKind) -> None:
        if not isinstance(name, str) or not isinstance(description, str) or not isinstance(kind, MetricKind):
            raise incompatible_arguments(
                "c_python_backend_utils.MetricFamily",
                "name: str, description: str, kind: c_python_backend_utils.MetricKind",
                (name, description, kind),
                {},
            )
        host = context.require_host("MetricFamily")
        if not _METRIC_NAME.match(name):
            raise _server_error("Error when creating MetricFamily: ", "Invalid metric name")
        registry = host.metrics
        try:
            state = registry._acquire_family(name, description, kind)
        except ValueError as exc:
            raise _server_error("Error when creating MetricFamily: ", str(exc)) from None
        self._registry = registry
        self._state = state
        weakref.finalize(self, registry._release_family, state)

    def Metric(self, labels: dict[str, str] | None = None, buckets: list[float] | None = None) -> Metric:
        """A metric of this family with ``labels``; histograms need ``buckets`` (a list of upper bounds)."""
        if labels is not None and not isinstance(labels, dict):
            raise TritonModelException("Failed to create metric. Labels must be a dictionary.")
        if buckets is not None:
            if not isinstance(buckets, list):
                raise TritonModelException("Failed to create metric. Buckets must be a list.")
            if self._state.kind in (MetricKind.COUNTER, MetricKind.GAUGE):
                raise TritonModelException("Failed to create metric. Unexpected buckets found.")
        elif self._state.kind == MetricKind.HISTOGRAM:
            raise TritonModelException("Failed to create metric. Missing required buckets.")
        labels = dict(labels or {})
        if any(not isinstance(v, str) or not isinstance(k, str) for k, v in labels.items()):
            raise _server_error("Error when creating Metric: ", "attempt to access JSON non-string as string")
        bounds = [float(b) for b in buckets] if buckets is not None else None
        if bounds is not None and any(b >= c for b, c in itertools.pairwise(bounds)):
            raise _server_error("Error when creating Metric: ", "Bucket Boundaries must be strictly sorted")
        key = json.dumps(labels, sort_keys=True)
        with self._registry._lock:
            state = self._state.metrics.get(key)
            if state is None:
                state = self._state.metrics[key] = MetricState(labels=labels, buckets=bounds)
                if bounds is not None:
                    state.bucket_counts = [0] * len(bounds)
        return Metric(self, state)


class Metric:
    """One metric: ``increment``, ``set``, ``observe`` and ``value`` as its kind allows."""

    def __init__(self, family: MetricFamily, state: MetricState) -> None:
        self._family = weakref.ref(family)
        self._kind = family._state.kind
        self._lock = family._registry._lock
        self._state = state

    def _check(self, what: str, operation: str) -> None:
        if self._family() is None:
            raise TritonModelException(
                f"Failed to {what} metric value: Invalid metric operation as the corresponding 'MetricFamily' "
                "has been deleted. The 'MetricFamily' object should be deleted AFTER its corresponding "
                "'Metric' objects have been deleted."
            )
        unsupported = {
            "Increment": (MetricKind.HISTOGRAM,),
            "Set": (MetricKind.COUNTER, MetricKind.HISTOGRAM),
            "Observe": (MetricKind.COUNTER, MetricKind.GAUGE),
            "Value": (MetricKind.HISTOGRAM,),
        }[operation]
        if self._kind in unsupported:
            raise _server_error(
                f"Failed to {what} metric value: ", f"{_KIND_NAMES[self._kind]} does not support {operation}"
            )

    def increment(self, value: float) -> None:
        """Add ``value`` (counters: non-negative only)."""
        self._check("increment", "Increment")
        if self._kind == MetricKind.COUNTER and value < 0:
            raise _server_error(
                "Failed to increment metric value: ",
                "TRITONSERVER_METRIC_KIND_COUNTER can only be incremented monotonically by non-negative values.",
            )
        with self._lock:
            self._state.value += float(value)

    def set(self, value: float) -> None:
        """Set a gauge."""
        self._check("set", "Set")
        with self._lock:
            self._state.value = float(value)

    def observe(self, value: float) -> None:
        """Record one observation in a histogram."""
        self._check("observe", "Observe")
        with self._lock:
            state = self._state
            state.count += 1
            state.total += float(value)
            for index, bound in enumerate(state.buckets or []):
                if value <= bound:
                    state.bucket_counts[index] += 1
                    break

    def value(self) -> float:
        """The current value of a counter or gauge."""
        self._check("get", "Value")
        return self._state.value
