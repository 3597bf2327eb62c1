"""Which model instance the current code runs for, and the services the host server gives the fake API.

The real stub is one process per model instance, so ``pb_utils`` calls (BLS, metrics, ``get_model_dir``)
implicitly belong to that instance. In-process, the instance is carried by a context variable that the
host sets around every call into model code; threads started while it is set inherit it (see
:func:`inherit_in_threads`), as threads of a stub process all belong to its instance.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from .errors import TritonModelException

if TYPE_CHECKING:
    from .messages import InferenceRequest, InferenceResponse, ResponseIterator
    from .metrics import MetricRegistry


class Host(Protocol):
    """What a server gives model code: BLS routing, model control, metrics and logs."""

    metrics: MetricRegistry

    def bls_execute(
        self, request: InferenceRequest, decoupled: bool, caller: InstanceContext | None
    ) -> InferenceResponse | ResponseIterator:
        """Run a BLS request; failures come back as error responses."""
        ...

    def bls_load_model(self, name: str, config: str, files: dict[str, bytes] | None) -> None: ...

    def bls_unload_model(self, name: str, unload_dependents: bool) -> None: ...

    def bls_is_model_ready(self, name: str, version: int) -> bool: ...

    def log(self, instance: InstanceContext | None, level: int, message: str) -> None: ...


class InstanceContext:
    """One model instance as model code sees it: its names, folder, host and life-cycle state."""

    def __init__(
        self,
        host: Host,
        *,
        model_name: str,
        version: int,
        instance_name: str,
        model_dir: str,
        version_dir: str,
    ) -> None:
        self.host = host
        self.model_name = model_name
        self.version = version
        self.instance_name = instance_name
        self.model_dir = model_dir
        self.version_dir = version_dir
        #: True once ``initialize`` returned, as the stub's ``IsInitialized()``.
        self.initialized = False
        #: True from the start of ``finalize``, as the stub's ``IsFinalizing()``.
        self.finalizing = False
        #: The instance's private modules and search path (a ``ModelNamespace``), if it has its own.
        self.namespace: Any = None

    def __repr__(self) -> str:
        return f"<instance {self.instance_name}>"


_current: contextvars.ContextVar[InstanceContext | None] = contextvars.ContextVar(
    "pbkit_model_instance", default=None
)
_patch_lock = threading.Lock()
_patched = False


@contextmanager
def running(instance: InstanceContext) -> Iterator[None]:
    """Mark ``instance`` as the one the enclosed model code runs for."""
    token = _current.set(instance)
    try:
        yield
    finally:
        _current.reset(token)


def current_instance() -> InstanceContext | None:
    """The instance the calling code runs for, if known."""
    return _current.get()


def current_host() -> Host | None:
    """The host of the current instance, if any."""
    instance = _current.get()
    return instance.host if instance is not None else None


def require_host(what: str) -> Host:
    """The current host, or a clear error naming ``what`` could not be done."""
    host = current_host()
    if host is None:
        raise TritonModelException(
            f"{what} needs a running model: call it from model code served by LocalTriton, or inside "
            "`with local_triton.running_as(model_name):`"
        )
    return host


def inherit_in_threads() -> None:
    """Make threads started by model code run for the same instance (once per process).

    ``threading.Thread`` records the current instance when it is created and sets it in the new thread
    before ``run`` (subclasses included); threads created outside model code are unaffected.
    """
    global _patched
    with _patch_lock:
        if _patched:
            return
        original_init = threading.Thread.__init__
        original_bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

        def init(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            self._pbkit_instance = _current.get()  # type: ignore[attr-defined]

        def bootstrap_inner(self: threading.Thread) -> None:
            instance = getattr(self, "_pbkit_instance", None)
            if instance is not None:
                _current.set(instance)
            original_bootstrap(self)

        threading.Thread.__init__ = init  # type: ignore[method-assign]
        threading.Thread._bootstrap_inner = bootstrap_inner  # type: ignore[attr-defined]
        _patched = True
