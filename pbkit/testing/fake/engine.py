"""Running requests on model instances: the dynamic batcher, ``execute`` and what the stub does with its
return value, response delivery, and the error texts the Python backend produces."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import context
from .errors import TritonModelException
from .messages import (
    TRITONSERVER_REQUEST_RELEASE_RESCHEDULE,
    TRITONSERVER_RESPONSE_COMPLETE_FINAL,
    InferenceRequest,
    InferenceResponse,
    prune,
    release_flags,
    sender_of,
)
from .tensor import Tensor

if TYPE_CHECKING:
    from .isolation import ModelNamespace

_FAKE_DIR = os.path.dirname(os.path.abspath(__file__))
_LOCAL_FILE = os.path.join(os.path.dirname(_FAKE_DIR), "local.py")


# ------------------------------------------------------------------------------------------ events
@dataclass
class Event:
    """Something that happened to a request: a response (``flags`` may carry FINAL), or a failure."""

    response: InferenceResponse | None = None
    flags: int = 0
    error_code: str | None = None
    error_message: str = ""
    #: The model returned None for this request and can no longer answer it (a real server never replies).
    abandoned: bool = False

    @property
    def final(self) -> bool:
        return (
            bool(self.flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            or self.error_code is not None
            or self.abandoned
        )


@dataclass
class PendingRequest:
    """A validated request waiting for, or in, an ``execute`` call."""

    inputs: list[Tensor]
    requested: frozenset[str]
    parameters_json: str
    batch_size: int
    on_event: Callable[[Event], None]
    request_id: str = ""
    correlation_id: int | str = 0
    flags: int = 0
    timeout_us: int = 0
    enqueued: float = field(default_factory=time.monotonic)
    #: Set when the client gave up on the request (``is_cancelled()``).
    cancelled: bool = False
    #: Set (under the scheduler's lock) once ``execute`` has processed the request.
    processed: bool = False
    completed: bool = False
    sender_taken: bool = False

    @property
    def input_names(self) -> frozenset[str]:
        return frozenset(t.name() for t in self.inputs)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` unless the request already got its final response."""
        if self.completed:
            return
        if event.final:
            self.completed = True
        self.on_event(event)

    def is_cancelled(self) -> bool:
        """Whether the client cancelled the request."""
        return self.cancelled

    def cancel(self) -> None:
        """Cancel the request (the model sees ``is_cancelled()``)."""
        self.cancelled = True

    def fail(self, code: str, message: str) -> None:
        """Finish the request with an error."""
        self.emit(Event(error_code=code, error_message=message))


class BatchFailure(Exception):
    """``execute`` failed for the whole batch; the message is what the stub reports."""


# ------------------------------------------------------------------------------------ error texts
def format_exception(exc: BaseException) -> str:
    """An exception as pybind11 renders it for the stub: ``Type: message`` and the frames, innermost first."""
    text = f"{type(exc).__name__}: {exc}"
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith((_FAKE_DIR, "<frozen importlib")) and frame.filename != _LOCAL_FILE
    ]
    if not frames:
        return text
    lines = "".join(f"  {frame.filename}({frame.lineno}): {frame.name}\n" for frame in reversed(frames))
    return f"{text}\n\nAt:\n{lines}"


def failure_message(instance_name: str, detail: str) -> str:
    """What every request of a failed batch gets (code INTERNAL)."""
    return f"Failed to process the request(s) for model '{instance_name}', message: {detail}"


# ------------------------------------------------------------------------------------------ instances
class Instance:
    """One model instance: an object with ``execute`` run under its :class:`~.context.InstanceContext`."""

    def __init__(
        self,
        model: Any,
        ctx: context.InstanceContext,
        *,
        decoupled: bool,
        namespace: ModelNamespace | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> None:
        self.model = model
        self.ctx = ctx
        self.decoupled = decoupled
        self.namespace = namespace
        self._on_log = on_log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self.thread_id: int | None = None

    @property
    def name(self) -> str:
        return self.ctx.instance_name

    def call(self, method: str, *args: Any) -> Any:
        """Call a model method as the stub does (this instance current, its modules active)."""
        if self.namespace is not None:
            self.namespace.activate()
        with context.running(self.ctx):
            return getattr(self.model, method)(*args)

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The instance's event loop, started on first use in a daemon thread (the stub's ``GetAsyncEventLoop``)."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"{self.name}-loop", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def run_coroutine(self, coroutine: Any, in_background: bool) -> Any:
        """Run ``execute``'s coroutine on the instance loop; wait for it unless ``in_background``."""
        instance_ctx = self.ctx

        async def with_instance() -> Any:
            with context.running(instance_ctx):
                return await coroutine

        future = asyncio.run_coroutine_threadsafe(with_instance(), self.event_loop())
        if in_background:
            future.add_done_callback(self._background_done)
            return None
        return future.result()

    def _background_done(self, future: Any) -> None:
        exc = future.exception()
        if exc is not None and self._on_log is not None:
            self._on_log("".join(traceback.format_exception(exc)))

    def stop_loop(self) -> None:
        """Stop the event loop (before ``finalize``, like the stub)."""
        with self._loop_lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None


def execute_batch(
    instance: Instance, batch: Sequence[PendingRequest], requeue: Callable[[PendingRequest], None]
) -> None:
    """Run one ``execute`` call on ``batch`` and deliver what it returns (the stub's ``ProcessRequests``)."""
    requests = [_make_request(instance, pending) for pending in batch]
    responses: list[InferenceResponse | None] | None = None
    instance.thread_id = threading.get_ident()
    try:
        if not hasattr(instance.model, "execute"):
            raise BatchFailure(
                f"Python model {instance.ctx.version_dir} does not implement `execute` method."
            )
        result = instance.call("execute", requests)
        if asyncio.iscoroutine(result):
            if instance.decoupled:
                instance.run_coroutine(result, in_background=True)
                result = None
            else:
                result = instance.run_coroutine(result, in_background=False)
        responses = _check_returned(instance, batch, requests, result)
    except BatchFailure as exc:
        _fail_batch(instance, batch, requests, str(exc))
    except Exception as exc:
        _fail_batch(instance, batch, requests, format_exception(exc))
    finally:
        instance.thread_id = None
    requeued = set()
    for index, (pending, request) in enumerate(zip(batch, requests, strict=True)):
        response = responses[index] if responses is not None else None
        if responses is None:
            pass
        elif response is not None:
            prune(response, pending.requested)
            pending.emit(Event(response=response, flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL))
        elif release_flags(request) == TRITONSERVER_REQUEST_RELEASE_RESCHEDULE and not instance.decoupled:
            requeued.add(index)
        elif not instance.decoupled and not pending.completed and not pending.sender_taken:
            pending.emit(Event(abandoned=True))
    for index, pending in enumerate(batch):
        if index in requeued:
            requeue(pending)
        else:
            pending.processed = True


def _make_request(instance: Instance, pending: PendingRequest) -> InferenceRequest:
    def deliver(response: InferenceResponse | None, flags: int) -> None:
        pending.emit(Event(response=response, flags=flags))

    request = InferenceRequest._received(
        inputs=pending.inputs,
        requested_output_names=pending.requested,
        model_name=instance.ctx.model_name,
        model_version=instance.ctx.version,
        parameters_json=pending.parameters_json,
        request_id=pending.request_id,
        correlation_id=pending.correlation_id,
        flags=pending.flags,
        timeout=pending.timeout_us,
        is_decoupled=instance.decoupled,
        deliver=deliver,
        is_cancelled=pending.is_cancelled,
        transport=pending,
    )
    return request


def _check_returned(
    instance: Instance, batch: Sequence[PendingRequest], requests: list[InferenceRequest], result: Any
) -> list[InferenceResponse | None]:
    """The stub's ``ProcessReturnedResponses``: the return value's rules, in its order."""
    if result is None:
        return [None] * len(requests)
    if instance.decoupled:
        raise BatchFailure(
            f"Python model '{instance.name}' is using the decoupled mode and the execute function must return None."
        )
    if not isinstance(result, list):
        raise BatchFailure(f"Expected a list in the execute return, found type '{type(result)}'.")
    if len(result) != len(requests):
        raise BatchFailure(
            "Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
            f"InferenceRequest(s) size is:{len(requests)}, and InferenceResponse(s) size is:{len(result)}\n"
        )
    for request, response in zip(requests, result, strict=True):
        if response is None:
            continue
        if release_flags(request) == TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
            raise BatchFailure(
                "Expected a None object in the execute function return list for reschduled request, "
                f"found type '{type(response)}'."
            )
        if not isinstance(response, InferenceResponse):
            raise BatchFailure(
                "Expected an 'InferenceResponse' object in the execute function return list, "
                f"found type '{type(response)}'."
            )
        try:
            sender_of(request)._update_state(response, TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except TritonModelException as exc:
            raise BatchFailure(str(exc)) from None
    return list(result)


def _fail_batch(
    instance: Instance, batch: Sequence[PendingRequest], requests: list[InferenceRequest], detail: str
) -> None:
    message = failure_message(instance.name, detail)
    if instance._on_log is not None:
        instance._on_log(message)
    for pending, request in zip(batch, requests, strict=True):
        pending.fail("INTERNAL", message)
        sender_of(request)._close()


# ------------------------------------------------------------------------------------------ batcher
@dataclass
class BatchingPolicy:
    """How the scheduler groups requests into ``execute`` calls."""

    dynamic: bool
    max_batch_size: int
    preferred: tuple[int, ...] = ()
    max_queue_delay_s: float = 0.0
    has_optional: bool = False


class Scheduler:
    """Queues requests for a model version and runs them on free instances, in the caller's thread.

    Without dynamic batching every ``execute`` gets one request. With it, the batch is formed as
    Triton's dynamic batcher does: queued requests in order while the summed batch size fits
    ``max_batch_size``, cut at the largest preferred batch size reached, waiting up to
    ``max_queue_delay_microseconds`` for more requests when no preferred size is reached.
    """

    def __init__(self, instances: list[Instance], policy: BatchingPolicy) -> None:
        self.instances = instances
        self.policy = policy
        self._free = list(instances)
        self._queue: collections.deque[PendingRequest] = collections.deque()
        self._cv = threading.Condition()
        #: Requests per ``execute`` call, in order.
        self.batches: list[int] = []

    def submit(self, pendings: Sequence[PendingRequest]) -> None:
        """Queue requests (atomically, so they can share a batch)."""
        with self._cv:
            self._queue.extend(pendings)
            self._cv.notify_all()

    def _requeue(self, pending: PendingRequest) -> None:
        pending.processed = False
        self.submit([pending])

    def busy_in_this_thread(self) -> bool:
        """Whether every instance is busy and one of them is running in the calling thread (a BLS to itself)."""
        me = threading.get_ident()
        with self._cv:
            return not self._free and any(i.thread_id == me for i in self.instances)

    def drive(self, pendings: Sequence[PendingRequest], deadline: float | None) -> bool:
        """Run batches until each of ``pendings`` was processed by ``execute``; False on timeout."""
        while True:
            with self._cv:
                while True:
                    if all(p.processed for p in pendings):
                        return True
                    if self._queue and self._free:
                        batch, wait = self._take_batch()
                        if batch:
                            instance = self._free.pop(0)
                            break
                    else:
                        wait = None
                    timeout = None if deadline is None else deadline - time.monotonic()
                    if timeout is not None and timeout <= 0:
                        return False
                    if wait is not None:
                        timeout = wait if timeout is None else min(wait, timeout)
                    self._cv.wait(timeout if timeout is not None else 0.5)
            try:
                self.batches.append(len(batch))
                execute_batch(instance, batch, self._requeue)
            finally:
                with self._cv:
                    self._free.append(instance)
                    self._cv.notify_all()

    def _take_batch(self) -> tuple[list[PendingRequest], float | None]:
        """Pop the next batch (lock held); or ([], seconds to wait) while the batcher holds for more."""
        policy = self.policy
        if not policy.dynamic:
            return [self._queue.popleft()], None
        count, size, best = 0, 0, 0
        first_inputs = self._queue[0].input_names
        largest_preferred = max(policy.preferred) if policy.preferred else 0
        for pending in self._queue:
            request_size = max(1, pending.batch_size)
            if count and size + request_size > policy.max_batch_size:
                break
            if count and policy.has_optional and pending.input_names != first_inputs:
                break
            count += 1
            size += request_size
            if size in policy.preferred:
                best = count
        if best:
            count = best
        elif policy.max_queue_delay_s > 0 and size < largest_preferred and count == len(self._queue):
            waited = time.monotonic() - self._queue[0].enqueued
            if waited < policy.max_queue_delay_s:
                return [], policy.max_queue_delay_s - waited
        return [self._queue.popleft() for _ in range(count)], None


# ------------------------------------------------------------------------------------------ stubs
class FunctionModel:
    """A stand-in model from a function ``inputs -> outputs`` (dicts of numpy arrays), one call per request."""

    def __init__(self, function: Callable[[dict[str, np.ndarray]], dict[str, Any]]) -> None:
        self.function = function

    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        from .errors import TritonError

        responses = []
        for request in requests:
            inputs = {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}
            try:
                outputs = self.function(inputs)
                tensors = [Tensor(name, np.asarray(value)) for name, value in outputs.items()]
                responses.append(InferenceResponse(tensors))
            except Exception as exc:
                responses.append(InferenceResponse(error=TritonError(f"{type(exc).__name__}: {exc}")))
        return responses
