"""``LocalTriton``: a model repository served in-process, the way tritonserver's Python backend serves it.

::

    with LocalTriton("model_repository", stubs={"encoder_trt": fake_encoder}) as triton:
        out = triton.infer("add_sub", {"INPUT0": a, "INPUT1": b})
        for part in triton.stream("repeat", {"IN": x}):
            ...
        results = triton.infer_many("add_sub", [inputs_1, inputs_2, inputs_3])   # batched together

It implements :class:`~pbkit.testing.client.TritonClient`, like :class:`~pbkit.testing.server.TritonServer`:
the same calls give the same outputs and the same :class:`~pbkit.testing.client.InferError` codes and
messages (those of the gRPC client). What it reproduces:

* loading: ``config.pbtxt`` (or none: Python models are auto-filled), version folders and
  ``version_policy``, ``default_model_filename``, ``auto_complete_config`` before ``initialize``,
  one model object per instance of each ``instance_group``, ``initialize(args)`` with exactly the keys
  and string values Triton passes (``args["model_config"]`` is Triton's JSON rendering of the
  normalized config), ``finalize`` on :meth:`close`; a model that fails to load is unavailable, not fatal;
* each model instance imports its model in its own module namespace (two models may each have a
  ``utils.py``); modules imported before loading (numpy, pbkit, ...) are shared, so generated pbkit
  models reuse the running ``pbkit`` instead of their vendored copy;
* the core's request checks (unknown/missing inputs, data types, shapes with ``-1``, batch sizes,
  unknown outputs) with its messages; outputs pruned to the requested ones;
* dynamic batching: concurrent :meth:`infer` calls and :meth:`infer_many` are grouped into one
  ``execute`` call as Triton's dynamic batcher groups them (``max_batch_size``, preferred sizes,
  ``max_queue_delay_microseconds``); without ``dynamic_batching`` each ``execute`` gets one request;
  requests sent together to an ensemble reach each step's batcher together;
* what the Python backend does with ``execute``'s result: wrong type, wrong count, raising (INTERNAL,
  ``Failed to process the request(s) for model '<instance>', message: ...``), error responses (code
  kept), response senders and their rules, decoupled models, ``async def execute``;
* BLS to the other models of the repository or to ``stubs`` (functions or objects standing in for
  TensorRT/ONNX models), with the Python backend's error responses; ensembles step by step;
* custom metrics (:attr:`metrics`) and ``pb_utils.Logger`` output (:attr:`logs`);
* orders that follow Triton's hash maps: the order of ``request.inputs()``, the input a validation
  error names first, the order of ensemble outputs (libstdc++ ``unordered_map`` order, reproduced).

Where it knowingly differs from tritonserver 2.51:

* no GPUs: ``KIND_GPU`` instances run on the CPU (``args`` still say ``GPU``); tensors are always CPU;
* ``sequence_batching`` models load but get one request per ``execute`` (no correlation routing or
  implicit state); response cache, rate limiter and queue policies are ignored;
* ``load_model``/``unload_model`` work without explicit model-control mode;
* a request the model returns ``None`` for, without ever using its sender, fails at once with
  :class:`~pbkit.testing.server.InferTimeout` (a server never answers it); a model calling itself
  through BLS with no free instance gets an error response (a server deadlocks);
* while a model runs, ``sys.path`` does not list its folders (imports resolve through its namespace),
  and ``sys.modules`` shows the private modules of the model that ran last;
* ``InferenceResponse(parameters=...)`` and ``ResponseIterator.cancel()`` exist, as in recent Triton
  releases (2.51 lacks them); request parameters reach the model with sorted keys (over gRPC their
  order is unspecified).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .client import InferError, Inputs, Outputs, Parameters
from .fake import context, dtypes, install, repository
from .fake import pb_utils as fake_pb_utils
from .fake.engine import (
    BatchingPolicy,
    Event,
    FunctionModel,
    Instance,
    PendingRequest,
    Scheduler,
    format_exception,
)
from .fake.errors import TritonModelException
from .fake.isolation import ModelNamespace, import_model_module, install_finder
from .fake.messages import (
    TRITONSERVER_RESPONSE_COMPLETE_FINAL,
    InferenceRequest,
    InferenceResponse,
    ResponseIterator,
    bls_target,
    error_response,
)
from .fake.metrics import LogLevel, MetricRegistry
from .fake.ordering import unordered_order
from .fake.tensor import Tensor, as_bytes_array, raw_array, received, triton_type
from .fake.validation import (
    ModelIO,
    RequestError,
    check_request,
    client_array,
    parameters_json,
    requested_outputs,
    reshaped,
)
from .server import DEFAULT_TIMEOUT, InferTimeout, code_from_stream_message

__all__ = ["LocalTriton", "LogRecord", "ModelStatus"]

Stub = Callable[[dict[str, np.ndarray]], Mapping[str, Any]] | Any

_KIND_NAMES = {0: "CPU", 1: "GPU", 2: "CPU", 3: "MODEL"}  # KIND_AUTO resolves to CPU without GPUs


@dataclass
class LogRecord:
    """A line a model wrote with ``pb_utils.Logger`` (or the server wrote about a model)."""

    instance: str
    level: str
    message: str


@dataclass
class ModelStatus:
    """One model version as the repository index shows it."""

    name: str
    version: int
    state: str
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "READY"


@dataclass
class _Version:
    """A loaded (or failed) model version."""

    name: str
    version: int
    model_dir: Path
    config: repository.ModelConfig | None
    io: ModelIO
    kind: str  # "python", "stub", "ensemble"
    decoupled: bool = False
    instances: list[Instance] = field(default_factory=list)
    namespaces: list[ModelNamespace] = field(default_factory=list)
    scheduler: Scheduler | None = None
    ready: bool = False
    reason: str = ""

    @property
    def version_dir(self) -> Path:
        return self.model_dir / str(self.version)


@dataclass
class _Model:
    name: str
    model_dir: Path
    versions: dict[int, _Version] = field(default_factory=dict)
    temp_dir: str | None = None


class LocalTriton:
    """Serve ``repository`` in-process; see the module docstring.

    ``stubs`` maps model names to stand-ins: a function ``inputs -> outputs`` (dicts of numpy arrays)
    or an object with ``execute(requests)`` like a ``TritonPythonModel``. A stub replaces the model
    folder of that name (its ``config.pbtxt``, if any, still defines inputs, outputs and batching) or
    adds a model the repository lacks. ``models`` limits loading to those names. ``auto_complete=False``
    is ``--disable-auto-complete-config``. ``timeout`` is the default per-call timeout in seconds.
    """

    def __init__(
        self,
        repository_path: str | os.PathLike[str],
        *,
        stubs: Mapping[str, Stub] | None = None,
        models: Sequence[str] | None = None,
        auto_complete: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        install()
        self.repository = Path(repository_path)
        if not self.repository.is_dir():
            raise FileNotFoundError(f"model repository {self.repository} does not exist")
        self.timeout = timeout
        self.auto_complete = auto_complete
        self.metrics = MetricRegistry()
        self.logs: list[LogRecord] = []
        self._stubs: dict[str, Stub] = dict(stubs or {})
        self._models: dict[str, _Model] = {}
        self._lock = threading.RLock()
        self._closed = False
        install_finder()
        names = sorted(
            {p.name for p in self.repository.iterdir() if p.is_dir() and not p.name.startswith(".")}
            | set(self._stubs)
        )
        if models is not None:
            names = [n for n in names if n in set(models)]
        ensembles = [n for n in names if self._is_ensemble_dir(n)]
        for name in names:
            if name not in ensembles:
                self._load(name)
        # Ensembles load once their steps are ready (an ensemble may use another ensemble).
        while ensembles:
            for name in ensembles:
                self._load(name)
            failed = [n for n in ensembles if not any(v.ready for v in self._models[n].versions.values())]
            if len(failed) == len(ensembles):
                break
            ensembles = failed

    # ------------------------------------------------------------------------------ context manager
    def __enter__(self) -> LocalTriton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Finalize every model instance (``finalize``), like a server shutting down."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            for name in list(self._models):
                self._unload(name)

    # ------------------------------------------------------------------------------ loading
    def _is_ensemble_dir(self, name: str) -> bool:
        path = self.repository / name / "config.pbtxt"
        if name in self._stubs or not path.is_file():
            return False
        try:
            return repository.read_config(self.repository / name).platform == repository.ENSEMBLE_PLATFORM
        except repository.ConfigError:
            return False

    def _load(
        self, name: str, config_override: repository.ModelConfig | None = None, model_dir: Path | None = None
    ) -> None:
        model_dir = model_dir or self.repository / name
        model = _Model(name, model_dir)
        self._models[name] = model
        try:
            if name in self._stubs:
                self._load_stub(model, config_override)
                return
            config = config_override if config_override is not None else repository.read_config(model_dir)
            repository.autofill(config, name, model_dir)
            if config.platform == repository.ENSEMBLE_PLATFORM:
                self._load_ensemble(model, config)
                return
            if config.backend != repository.PYTHON_BACKEND:
                what = config.backend or config.platform or "unknown"
                raise repository.ConfigError(
                    f"LocalTriton runs Python-backend models only; model '{name}' uses backend '{what}': "
                    f"pass LocalTriton(stubs={{'{name}': ...}}) to stand in for it"
                )
            repository.normalize(config)
            versions = repository.select_versions(config, repository.version_dirs(model_dir))
            if not versions:
                raise repository.ConfigError(f"model '{name}' has no version folder to load")
            for version in versions:
                model.versions[version] = self._load_python_version(model, version, config)
        except repository.ConfigError as exc:
            model.versions.setdefault(
                1,
                _Version(
                    name,
                    1,
                    model_dir,
                    None,
                    ModelIO.unchecked(name),
                    "python",
                    reason=f"Invalid argument: {exc}",
                ),
            )

    def _load_stub(self, model: _Model, config_override: repository.ModelConfig | None) -> None:
        stub = self._stubs[model.name]
        config_path = model.model_dir / "config.pbtxt"
        config: repository.ModelConfig | None = config_override
        if config is None and config_path.is_file():
            config = repository.read_config(model.model_dir)
        if config is not None:
            if not config.name:
                config.name = model.name
            repository.normalize(config)
            io = ModelIO.from_config(config)
            available = repository.version_dirs(model.model_dir)
            versions = repository.select_versions(config, available) if available else [1]
        else:
            io = ModelIO.unchecked(model.name)
            versions = [1]
        decoupled = config is not None and repository.is_decoupled(config)
        for version in versions:
            entry = _Version(model.name, version, model.model_dir, config, io, "stub", decoupled=decoupled)
            target = stub if hasattr(stub, "execute") else FunctionModel(stub)
            ctx = self._instance_context(entry, f"{model.name}_0")
            instance = Instance(target, ctx, decoupled=decoupled, on_log=self._server_log(ctx.instance_name))
            if hasattr(target, "initialize") and not isinstance(target, FunctionModel):
                args = self._args(entry, ctx.instance_name, "CPU", 0)
                try:
                    instance.call("initialize", args)
                except Exception as exc:
                    entry.reason = f"Internal: {format_exception(exc)}"
                    model.versions[version] = entry
                    continue
            ctx.initialized = True
            entry.instances = [instance]
            entry.scheduler = Scheduler([instance], self._policy(config, io))
            entry.ready = True
            model.versions[version] = entry

    def _load_ensemble(self, model: _Model, config: repository.ModelConfig) -> None:
        repository.normalize(config)
        repository.validate(config)
        io = ModelIO.from_config(config)
        # Like Triton, an ensemble without a version folder loads no version at all: it is never ready
        # and requests to it fail with NOT_FOUND ("has no available versions").
        available = repository.version_dirs(model.model_dir)
        for version in repository.select_versions(config, available):
            entry = _Version(model.name, version, model.model_dir, config, io, "ensemble")
            missing = [
                step.model_name
                for step in config.ensemble_scheduling.step
                if self._ready_version(step.model_name, step.model_version) is None
            ]
            if missing:
                entry.reason = (
                    f"Invalid argument: in ensemble {model.name}, ensemble step model '{missing[0]}' "
                    "is not available"
                )
            else:
                entry.decoupled = any(
                    self._is_decoupled(step.model_name, step.model_version)
                    for step in config.ensemble_scheduling.step
                )
                if entry.decoupled:  # Triton marks an ensemble with a decoupled step as decoupled
                    config.model_transaction_policy.decoupled = True
                entry.ready = True
            model.versions[version] = entry

    def _load_python_version(self, model: _Model, version: int, base: repository.ModelConfig) -> _Version:
        config = repository.ModelConfig()
        config.CopyFrom(base)
        version_dir = model.model_dir / str(version)
        entry = _Version(
            model.name, version, model.model_dir, config, ModelIO.unchecked(model.name), "python"
        )
        filename = config.default_model_filename or repository.PYTHON_FILENAME
        if not (version_dir / filename).is_file():
            entry.reason = f"Internal: Python model file not found in '{version_dir / filename}'"
            return entry
        try:
            if self.auto_complete:
                self._auto_complete(entry, filename)
            repository.validate(config)
        except (repository.ConfigError, ValueError) as exc:
            entry.reason = f"Invalid argument: {exc}"
            return entry
        except Exception as exc:
            entry.reason = f"Internal: {format_exception(exc)}"
            return entry
        entry.io = ModelIO.from_config(config)
        entry.decoupled = repository.is_decoupled(config)
        try:
            for group in config.instance_group:
                kind = _KIND_NAMES.get(int(group.kind), "CPU")
                devices = list(group.gpus) if kind == "GPU" and group.gpus else [0]
                index = 0
                for device in devices:
                    for _ in range(group.count):
                        entry.instances.append(
                            self._start_instance(entry, filename, f"{group.name}_{index}", kind, device)
                        )
                        index += 1
        except Exception as exc:
            entry.reason = f"Internal: {format_exception(exc)}"
            self._stop_version(entry)
            return entry
        entry.scheduler = Scheduler(entry.instances, self._policy(config, entry.io))
        entry.ready = True
        return entry

    def _import_model(self, entry: _Version, filename: str, label: str) -> tuple[Any, ModelNamespace]:
        namespace = ModelNamespace(label, entry.version_dir, entry.model_dir)
        entry.namespaces.append(namespace)
        with fake_pb_utils.hidden_while_importing():
            module = import_model_module(namespace, str(entry.version), filename)
        model_class = getattr(module, "TritonPythonModel", None)
        if model_class is None:
            raise AttributeError(f"module '{module.__name__}' has no attribute 'TritonPythonModel'")
        return model_class, namespace

    def _auto_complete(self, entry: _Version, filename: str) -> None:
        assert entry.config is not None
        model_class, namespace = self._import_model(
            entry, filename, f"{entry.name}/{entry.version} auto-complete"
        )
        try:
            complete = getattr(model_class, "auto_complete_config", None)
            if complete is None:
                return
            ctx = self._instance_context(entry, entry.name)
            ctx.namespace = namespace
            namespace.activate()
            with context.running(ctx):
                result = complete(fake_pb_utils.ModelConfig(repository.config_json(entry.config)))
            if not isinstance(result, fake_pb_utils.ModelConfig):
                raise repository.ConfigError(
                    f"auto_complete_config function in model '{entry.name}' must return a valid pb.ModelConfig object."
                )
            repository.apply_auto_complete(entry.config, repository.config_from_dict(result._model_config))
        finally:
            namespace.discard()
            entry.namespaces.remove(namespace)

    def _start_instance(
        self, entry: _Version, filename: str, instance_name: str, kind: str, device: int
    ) -> Instance:
        model_class, namespace = self._import_model(entry, filename, instance_name)
        ctx = self._instance_context(entry, instance_name)
        ctx.namespace = namespace
        with context.running(ctx):
            namespace.activate()
            model_object = model_class()
        instance = Instance(
            model_object,
            ctx,
            decoupled=entry.decoupled,
            namespace=namespace,
            on_log=self._server_log(instance_name),
        )
        if hasattr(model_object, "initialize"):
            instance.call("initialize", self._args(entry, instance_name, kind, device))
        ctx.initialized = True
        return instance

    def _instance_context(self, entry: _Version, instance_name: str) -> context.InstanceContext:
        return context.InstanceContext(
            self,
            model_name=entry.name,
            version=entry.version,
            instance_name=instance_name,
            model_dir=str(entry.model_dir),
            version_dir=str(entry.version_dir),
        )

    def _args(self, entry: _Version, instance_name: str, kind: str, device: int) -> dict[str, str]:
        return {
            "model_config": repository.config_json(entry.config) if entry.config is not None else "{}",
            "model_instance_kind": kind,
            "model_instance_name": instance_name,
            "model_instance_device_id": str(device),
            "model_repository": os.path.abspath(entry.model_dir),
            "model_version": str(entry.version),
            "model_name": entry.name,
        }

    @staticmethod
    def _policy(config: repository.ModelConfig | None, io: ModelIO) -> BatchingPolicy:
        if config is None or not config.HasField("dynamic_batching") or config.max_batch_size <= 0:
            return BatchingPolicy(dynamic=False, max_batch_size=max(io.max_batch_size, 0))
        batching = config.dynamic_batching
        return BatchingPolicy(
            dynamic=True,
            max_batch_size=config.max_batch_size,
            preferred=tuple(batching.preferred_batch_size),
            max_queue_delay_s=batching.max_queue_delay_microseconds / 1e6,
            has_optional=io.has_optional,
        )

    def _server_log(self, instance_name: str) -> Callable[[str], None]:
        def write(message: str) -> None:
            self.logs.append(LogRecord(instance_name, "ERROR", message))

        return write

    def _stop_version(self, entry: _Version) -> None:
        for instance in entry.instances:
            instance.stop_loop()
            instance.ctx.finalizing = True
            if hasattr(instance.model, "finalize") and instance.ctx.initialized:
                try:
                    instance.call("finalize")
                except Exception as exc:
                    self.logs.append(LogRecord(instance.name, "INFO", format_exception(exc)))
        entry.instances = []
        for namespace in entry.namespaces:
            namespace.discard()
        entry.namespaces = []
        entry.ready = False

    def _unload(self, name: str) -> None:
        model = self._models.pop(name, None)
        if model is None:
            return
        for entry in model.versions.values():
            self._stop_version(entry)
        if model.temp_dir:
            shutil.rmtree(model.temp_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------ model control
    def load_model(
        self, model: str, *, config: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """Load (or reload) ``model``; ``config`` (JSON) and ``files`` (``"file:<version>/<name>"`` → bytes)
        override the repository's, as in ``pb_utils.load_model`` and the model-control API."""
        with self._lock:
            override = repository.parse_config_json(config) if config else None
            model_dir = self.repository / model
            temp_dir = None
            if files:
                if override is None:
                    raise InferError("INVALID_ARG", f"failed to load '{model}': files need a config")
                temp_dir = tempfile.mkdtemp(prefix=f"pbkit-{model}-")
                model_dir = Path(temp_dir) / model
                if (self.repository / model).is_dir():
                    shutil.copytree(self.repository / model, model_dir)
                model_dir.mkdir(parents=True, exist_ok=True)
                for key, content in files.items():
                    relative = key.removeprefix("file:")
                    target = model_dir / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
            if model not in self._models and not model_dir.is_dir() and model not in self._stubs:
                raise InferError(
                    "INVALID_ARG", f"failed to load '{model}', failed to poll from model repository"
                )
            self._unload(model)
            self._load(model, override, model_dir)
            self._models[model].temp_dir = temp_dir
            failed = [v.reason for v in self._models[model].versions.values() if not v.ready]
            if failed:
                raise InferError("INVALID_ARG", f"load failed for model '{model}': {failed[0]}")

    def unload_model(self, model: str, *, unload_dependents: bool = False) -> None:
        """Unload ``model`` (``finalize`` runs); it is then not ready."""
        with self._lock:
            self._unload(model)

    def model_states(self) -> list[ModelStatus]:
        """Every model version with its state (READY or UNAVAILABLE) and, if not ready, the reason."""
        states = []
        for model in sorted(self._models.values(), key=lambda m: m.name):
            for version, entry in sorted(model.versions.items()):
                states.append(
                    ModelStatus(model.name, version, "READY" if entry.ready else "UNAVAILABLE", entry.reason)
                )
        return states

    def config(self, model: str, version: int | str | None = None) -> dict[str, Any]:
        """The model's configuration as Triton serves it (``GET /v2/models/<m>/config``, normalized)."""
        entry = self._public_resolve(model, version)
        if entry.config is None:
            return {"name": model}
        return repository.config_dict(entry.config)

    @contextlib.contextmanager
    def running_as(self, model: str, version: int | None = None) -> Iterator[context.InstanceContext]:
        """Run the enclosed code as if it were code of ``model`` (its first instance), so ``pb_utils``
        calls that belong to a model (BLS, metrics, ``Logger``, ``get_model_dir``) work from a test."""
        entry = self._ready_version(model, version)
        if entry is not None and entry.instances:
            instance = entry.instances[0].ctx
        else:
            number = version if version is not None else 1
            instance = context.InstanceContext(
                self,
                model_name=model,
                version=number,
                instance_name=f"{model}_0",
                model_dir=str(self.repository / model),
                version_dir=str(self.repository / model / str(number)),
            )
            instance.initialized = True
        with context.running(instance):
            yield instance

    def batch_sizes(self, model: str, version: int | str | None = None) -> list[int]:
        """How many requests each ``execute`` call of the model received so far, in order."""
        entry = self._public_resolve(model, version)
        return list(entry.scheduler.batches) if entry.scheduler is not None else []

    # ------------------------------------------------------------------------------ resolution
    def _public_resolve(self, name: str, version: int | str | None) -> _Version:
        try:
            return self._resolve(name, version)
        except RequestError as exc:
            raise InferError(exc.code, exc.message) from None

    def _resolve(self, name: str, version: int | str | None) -> _Version:
        model = self._models.get(name)
        if model is None:
            raise RequestError("NOT_FOUND", f"Request for unknown model: '{name}' is not found")
        number = _version_number(version)
        if number == -1:
            for entry in sorted(model.versions.values(), key=lambda e: -e.version):
                if entry.ready:
                    return entry
            raise RequestError("NOT_FOUND", f"Request for unknown model: '{name}' has no available versions")
        entry = model.versions.get(number)
        if entry is None:
            raise RequestError(
                "NOT_FOUND", f"Request for unknown model: '{name}' version {number} is not found"
            )
        if not entry.ready:
            raise RequestError(
                "UNAVAILABLE", f"Request for unknown model: '{name}' version {number} is not at ready state"
            )
        return entry

    def _ready_version(self, name: str, version: int | str | None) -> _Version | None:
        try:
            return self._resolve(name, version)
        except RequestError:
            return None

    def is_model_ready(self, model: str, version: int | str | None = None) -> bool:
        """Whether ``model`` (optionally one ``version``) is loaded and ready."""
        return self._ready_version(model, version) is not None

    # ------------------------------------------------------------------------------ requests
    def _pending(
        self,
        entry: _Version,
        tensors: Sequence[Tensor],
        requested: Sequence[str] | None,
        params_json: str,
        on_event: Callable[[Event], None],
        *,
        request_id: str = "",
        correlation_id: int | str = 0,
        flags: int = 0,
        timeout_us: int = 0,
    ) -> PendingRequest:
        shapes = [(t.name(), triton_type(t), tuple(t.shape())) for t in tensors]
        batch_size = check_request(entry.io, shapes, requested, request_id)
        # The backend reads inputs from the core's unordered_map, itself filled by iterating another one.
        by_name = {t.name(): t for t in tensors}
        ordered = [by_name[name] for name in unordered_order(unordered_order(by_name))]
        if entry.io.checked:
            inputs = [
                Tensor._wrap(t.name(), reshaped(entry.io, t.name(), raw_array(t)), triton_type(t))
                for t in ordered
            ]
        else:
            inputs = ordered
        wanted = requested_outputs(entry.io, requested) if entry.io.checked else frozenset(requested or ())
        return PendingRequest(
            inputs=inputs,
            requested=wanted if entry.io.checked or requested else _AllOutputs(),
            parameters_json=params_json,
            batch_size=batch_size,
            on_event=on_event,
            request_id=request_id,
            correlation_id=correlation_id,
            flags=flags,
            timeout_us=timeout_us,
        )

    def _run(self, entry: _Version, pendings: Sequence[PendingRequest], deadline: float | None) -> bool:
        """Have ``execute`` process ``pendings`` (ensembles: run their steps); False on timeout."""
        if entry.kind == "ensemble":
            if len(pendings) > 1 and not entry.decoupled:
                self._run_ensemble_together(entry, pendings, deadline)
            else:
                for pending in pendings:
                    self._run_ensemble(entry, pending, deadline)
            return True
        assert entry.scheduler is not None
        entry.scheduler.submit(pendings)
        return entry.scheduler.drive(pendings, deadline)

    def _client_inputs(self, inputs: Inputs) -> list[Tensor]:
        tensors = []
        for name, value in inputs.items():
            array, kind = client_array(name, value)
            tensors.append(Tensor._wrap(name, array.copy() if kind != dtypes.TYPE_BYTES else array, kind))
        return tensors

    def _deadline(self, timeout: float | None) -> tuple[float, float]:
        seconds = self.timeout if timeout is None else float(timeout)
        return seconds, time.monotonic() + seconds

    def infer(
        self,
        model: str,
        inputs: Inputs,
        *,
        outputs: list[str] | None = None,
        parameters: Parameters | None = None,
        version: int | str | None = None,
        timeout: float | None = None,
        request_id: str = "",
    ) -> Outputs:
        """Run one request and return its outputs, or raise :class:`~pbkit.testing.client.InferError`."""
        seconds, deadline = self._deadline(timeout)
        box: queue.SimpleQueue[Event] = queue.SimpleQueue()
        try:
            tensors = self._client_inputs(inputs)
            entry = self._resolve(model, version)
            if entry.decoupled:
                raise RequestError(
                    "UNSUPPORTED", "ModelInfer RPC doesn't support models with decoupled transaction policy"
                )
            pending = self._pending(
                entry, tensors, outputs, parameters_json(parameters), box.put, request_id=request_id
            )
        except RequestError as exc:
            raise InferError(exc.code, exc.message) from None
        what = f"inference on model {model!r}"
        if not self._run(entry, [pending], deadline):
            raise InferTimeout("UNAVAILABLE", f"{what}: no answer within {seconds:g} s")
        return _client_outputs(_wait(box, deadline, what, seconds))

    def infer_many(
        self,
        model: str,
        requests: Sequence[Inputs],
        *,
        outputs: list[str] | None = None,
        parameters: Parameters | None = None,
        version: int | str | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Send several requests at once, so that a dynamically batching model gets them in one ``execute``
        (as far as ``max_batch_size`` and the preferred sizes allow); returns their outputs in order.

        A failed request raises its :class:`~pbkit.testing.client.InferError` (after all finished), or with
        ``return_exceptions=True`` stands in the list in place of its outputs.
        """
        seconds, deadline = self._deadline(timeout)
        what = f"inference on model {model!r}"
        results: list[Any] = [None] * len(requests)
        boxes: list[queue.SimpleQueue[Event] | None] = [None] * len(requests)
        pendings: list[PendingRequest] = []
        entry: _Version | None = None
        for index, inputs in enumerate(requests):
            box: queue.SimpleQueue[Event] = queue.SimpleQueue()
            try:
                tensors = self._client_inputs(inputs)
                entry = self._resolve(model, version)
                if entry.decoupled:
                    raise RequestError(
                        "UNSUPPORTED",
                        "ModelInfer RPC doesn't support models with decoupled transaction policy",
                    )
                pendings.append(self._pending(entry, tensors, outputs, parameters_json(parameters), box.put))
                boxes[index] = box
            except RequestError as exc:
                results[index] = InferError(exc.code, exc.message)
        if pendings and entry is not None and not self._run(entry, pendings, deadline):
            raise InferTimeout("UNAVAILABLE", f"{what}: no answer within {seconds:g} s")
        for index, box in enumerate(boxes):
            if box is None:
                continue
            try:
                results[index] = _client_outputs(_wait(box, deadline, what, seconds))
            except InferError as exc:
                results[index] = exc
        if not return_exceptions:
            for result in results:
                if isinstance(result, InferError):
                    raise result
        return results

    def stream(
        self,
        model: str,
        inputs: Inputs,
        *,
        outputs: list[str] | None = None,
        parameters: Parameters | None = None,
        version: int | str | None = None,
        timeout: float | None = None,
        request_id: str = "",
    ) -> Iterator[Outputs]:
        """Run one request (decoupled models: streaming), yielding one dict per response until the final one;
        a flag-only final response yields nothing. Errors carry the codes a gRPC stream gives.

        Closing the iterator early cancels the request (the model sees ``is_cancelled()``).
        """
        return self._stream(model, inputs, outputs, parameters, version, timeout, request_id)

    def _stream(
        self,
        model: str,
        inputs: Inputs,
        outputs: list[str] | None,
        parameters: Parameters | None,
        version: int | str | None,
        timeout: float | None,
        request_id: str = "",
    ) -> Iterator[Outputs]:
        seconds, deadline = self._deadline(timeout)
        what = f"stream from model {model!r}"
        box: queue.SimpleQueue[Event] = queue.SimpleQueue()
        try:
            tensors = self._client_inputs(inputs)
            entry = self._resolve(model, version)
            pending = self._pending(
                entry, tensors, outputs, parameters_json(parameters), box.put, request_id=request_id
            )
        except RequestError as exc:
            raise InferError(code_from_stream_message(exc.message), exc.message) from None
        cancel = False
        try:
            if not self._run(entry, [pending], deadline):
                raise InferTimeout("UNAVAILABLE", f"{what}: no answer within {seconds:g} s")
            while True:
                event = _wait(box, deadline, what, seconds)
                if event.error_code is not None:
                    raise InferError(code_from_stream_message(event.error_message), event.error_message)
                if event.abandoned:
                    raise InferTimeout("UNAVAILABLE", f"{what}: {_ABANDONED}")
                response = event.response
                tensors_out: Outputs = {}
                if response is not None:
                    error = response.error()
                    if error is not None:
                        raise InferError(code_from_stream_message(error.message()), error.message())
                    tensors_out = _tensors_to_client(response)
                if tensors_out or not event.final:
                    yield tensors_out
                if event.final:
                    return
        except GeneratorExit:
            cancel = True
            raise
        finally:
            if cancel:
                pending.cancel()

    # ------------------------------------------------------------------------------ ensembles
    def _run_ensemble(self, entry: _Version, pending: PendingRequest, deadline: float | None) -> None:
        """Run the ensemble's steps as their inputs become available (steps no requested output needs are
        pruned); a failing step fails the request with its code and ``in ensemble '<name>', <message>``.

        Each response of a decoupled step runs the steps after it again and yields one ensemble response.
        """
        try:
            remaining = self._ensemble_steps(entry, pending)
            sent = self._ensemble_flow(
                entry, pending, {t.name(): t for t in pending.inputs}, remaining, deadline
            )
            if entry.decoupled:
                pending.emit(Event(flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL))
            elif not sent:
                raise _ensemble_deadlock(entry.name, pending)
        except RequestError as exc:
            pending.fail(exc.code, exc.message)
        finally:
            pending.processed = True

    def _ensemble_steps(self, entry: _Version, pending: PendingRequest) -> list[Any]:
        """The ensemble's steps that the request's requested outputs need, in config order."""
        assert entry.config is not None
        steps = list(entry.config.ensemble_scheduling.step)
        needed = set(pending.requested)
        changed = True
        while changed:
            changed = False
            for step in steps:
                wants = needed.intersection(step.output_map.values())
                if wants and not needed.issuperset(step.input_map.values()):
                    needed.update(step.input_map.values())
                    changed = True
        return [step for step in steps if needed.intersection(step.output_map.values())]

    def _run_ensemble_together(
        self, entry: _Version, pendings: Sequence[PendingRequest], deadline: float | None
    ) -> None:
        """Run requests sent together through a (non-decoupled) ensemble in lockstep: each round submits
        every request's next step to that step's model at once, so its dynamic batcher groups them as
        Triton's would for requests arriving together. Errors and responses are those of
        :meth:`_run_ensemble`."""
        flows = []
        for pending in pendings:
            try:
                flows.append(
                    _EnsembleFlow(
                        pending, {t.name(): t for t in pending.inputs}, self._ensemble_steps(entry, pending)
                    )
                )
            except RequestError as exc:
                pending.fail(exc.code, exc.message)
                pending.processed = True
        while flows:
            rounds: dict[tuple[str, int], list[tuple[_EnsembleFlow, Any]]] = {}
            for flow in list(flows):
                if not flow.remaining:
                    self._ensemble_respond(entry, flow.pending, flow.pool)
                    flow.pending.processed = True
                    flows.remove(flow)
                    continue
                step = _next_step(flow.remaining, flow.pool)
                if step is None:
                    deadlock = _ensemble_deadlock(entry.name, flow.pending)
                    flow.pending.fail(deadlock.code, deadlock.message)
                    flow.pending.processed = True
                    flows.remove(flow)
                    continue
                flow.remaining.remove(step)
                rounds.setdefault((step.model_name, step.model_version), []).append((flow, step))
            for (model, version), members in rounds.items():
                results = self._internal_infer_many(
                    model,
                    version,
                    [
                        (_step_inputs(step, flow.pool), list(step.output_map), flow.pending)
                        for flow, step in members
                    ],
                    deadline,
                )
                for (flow, step), result in zip(members, results, strict=True):
                    if isinstance(result, RequestError):
                        failure = _in_ensemble(entry.name, result)
                        flow.pending.fail(failure.code, failure.message)
                        flow.pending.processed = True
                        flows.remove(flow)
                        continue
                    flow.pool.update(
                        {target: result[name] for name, target in step.output_map.items() if name in result}
                    )

    def _ensemble_respond(self, entry: _Version, pending: PendingRequest, pool: dict[str, Tensor]) -> None:
        """Send the ensemble's response: its requested outputs, in the order Triton lists them."""
        tensors = [
            Tensor._wrap(name, raw_array(pool[name]), triton_type(pool[name]))
            for name in unordered_order(entry.io.outputs)
            if name in pending.requested and name in pool
        ]
        flags = 0 if entry.decoupled else TRITONSERVER_RESPONSE_COMPLETE_FINAL
        pending.emit(Event(response=InferenceResponse(tensors), flags=flags))

    def _ensemble_flow(
        self,
        entry: _Version,
        pending: PendingRequest,
        pool: dict[str, Tensor],
        steps: list[Any],
        deadline: float | None,
    ) -> int:
        """Run ``steps`` on the tensors in ``pool``; returns how many ensemble responses were sent."""
        remaining = list(steps)
        while remaining:
            step = _next_step(remaining, pool)
            if step is None:
                raise _ensemble_deadlock(entry.name, pending)
            remaining.remove(step)
            try:
                responses = self._internal_infer(
                    step.model_name,
                    step.model_version,
                    _step_inputs(step, pool),
                    list(step.output_map),
                    pending,
                    deadline,
                )
            except RequestError as exc:
                raise _in_ensemble(entry.name, exc) from None
            if len(responses) != 1 or self._is_decoupled(step.model_name, step.model_version):
                sent = 0
                for results in responses:
                    branch = dict(pool)
                    branch.update(
                        {target: results[name] for name, target in step.output_map.items() if name in results}
                    )
                    sent += self._ensemble_flow(entry, pending, branch, remaining, deadline)
                return sent
            pool.update(
                {
                    target: responses[0][name]
                    for name, target in step.output_map.items()
                    if name in responses[0]
                }
            )
        self._ensemble_respond(entry, pending, pool)
        return 1

    def _is_decoupled(self, model: str, version: int) -> bool:
        entry = self._ready_version(model, version)
        return entry is not None and entry.decoupled

    def _internal_infer(
        self,
        model: str,
        version: int,
        tensors: list[Tensor],
        requested: list[str],
        parent: PendingRequest,
        deadline: float | None,
    ) -> list[dict[str, Tensor]]:
        """A request from an ensemble step: the outputs of each response (one, unless decoupled)."""
        entry = self._resolve(model, version)
        pending, box = self._step_request(entry, tensors, requested, parent)
        if not self._run(entry, [pending], deadline):
            raise RequestError("UNAVAILABLE", f"Request timeout expired for model '{model}'")
        return self._step_responses(model, box, deadline)

    def _internal_infer_many(
        self,
        model: str,
        version: int,
        requests: Sequence[tuple[list[Tensor], list[str], PendingRequest]],
        deadline: float | None,
    ) -> list[dict[str, Tensor] | RequestError]:
        """Ensemble-step requests ``(tensors, requested, parent)`` submitted to ``model`` at once (so they
        can share a batch); for each, the outputs of its one response or its error."""
        results: list[dict[str, Tensor] | RequestError] = []
        try:
            entry = self._resolve(model, version)
        except RequestError as exc:
            return [exc] * len(requests)
        submitted: list[tuple[int, PendingRequest, queue.SimpleQueue[Event]]] = []
        for index, (tensors, requested, parent) in enumerate(requests):
            try:
                pending, box = self._step_request(entry, tensors, requested, parent)
            except RequestError as exc:
                results.append(exc)
                continue
            results.append({})
            submitted.append((index, pending, box))
        if submitted and not self._run(entry, [pending for _, pending, _ in submitted], deadline):
            timeout = RequestError("UNAVAILABLE", f"Request timeout expired for model '{model}'")
            return [timeout if not isinstance(r, RequestError) else r for r in results]
        for index, _, box in submitted:
            try:
                (results[index],) = self._step_responses(model, box, deadline)
            except RequestError as exc:
                results[index] = exc
        return results

    def _step_request(
        self, entry: _Version, tensors: list[Tensor], requested: list[str], parent: PendingRequest
    ) -> tuple[PendingRequest, queue.SimpleQueue[Event]]:
        box: queue.SimpleQueue[Event] = queue.SimpleQueue()
        pending = self._pending(
            entry,
            [received(t) for t in tensors],
            requested,
            parent.parameters_json,
            box.put,
            request_id=parent.request_id,
            correlation_id=parent.correlation_id,
            flags=parent.flags,
        )
        return pending, box

    def _step_responses(
        self, model: str, box: queue.SimpleQueue[Event], deadline: float | None
    ) -> list[dict[str, Tensor]]:
        """The outputs of each response ``model`` sends for one step request, until its final one."""
        responses: list[dict[str, Tensor]] = []
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                event = box.get(timeout=remaining)
            except queue.Empty:
                raise RequestError("UNAVAILABLE", f"Request timeout expired for model '{model}'") from None
            if event.error_code is not None:
                raise RequestError(event.error_code, event.error_message)
            if event.abandoned:
                raise RequestError("UNAVAILABLE", f"model '{model}' sent no response: {_ABANDONED}")
            if event.response is not None:
                error = event.response.error()
                if error is not None:
                    raise RequestError(error.code().name, error.message())
                responses.append({t.name(): received(t) for t in event.response.output_tensors()})
            if event.final:
                return responses

    # ------------------------------------------------------------------------------ Host (for pb_utils)
    def bls_execute(
        self, request: InferenceRequest, decoupled: bool, caller: context.InstanceContext | None
    ) -> InferenceResponse | ResponseIterator:
        """Run a BLS request like the Python backend: failures come back as error responses (code INTERNAL)."""
        name, version, inputs, request_id, correlation_id, flags, timeout_us = bls_target(request)
        prefix = f"Model {name} - Error when running inference: "
        entry = self._ready_version(name, version)
        if entry is None:
            return _bls_error(
                prefix + f"Failed for execute the inference request. Model '{name}' is not ready.", decoupled
            )
        if entry.decoupled and not decoupled:
            return _bls_error(
                prefix
                + f"Model {name} is using the decoupled. The current BLS request call doesn't support models using "
                "the decoupled transaction policy. Please use 'decoupled=True' argument to the 'exec' or "
                "'async_exec' calls for decoupled models.'",
                decoupled,
            )
        if (
            entry.scheduler is not None
            and len(entry.instances) == 1
            and entry.scheduler.busy_in_this_thread()
        ):
            return _bls_error(
                prefix
                + f"model '{name}' called itself through BLS while its only instance is busy; Triton would "
                "deadlock here (give the model more instances, or do not call it from itself).",
                decoupled,
            )
        iterator = ResponseIterator() if decoupled else None
        box: queue.SimpleQueue[Event] = queue.SimpleQueue()
        on_event: Callable[[Event], None] = box.put if iterator is None else _iterator_sink(iterator)
        requested = sorted(request._requested) if request._requested else None
        try:
            pending = self._pending(
                entry,
                [received(t) for t in inputs],
                requested,
                json.dumps(json.loads(request.parameters()), separators=(",", ":")),
                on_event,
                request_id=request_id,
                correlation_id=correlation_id,
                flags=flags,
                timeout_us=timeout_us,
            )
        except RequestError as exc:
            return _bls_error(prefix + exc.message, decoupled)
        if iterator is not None:
            iterator._cancel = pending.cancel
        deadline = time.monotonic() + timeout_us / 1e6 if timeout_us else None
        if not self._run(entry, [pending], deadline):
            return _bls_error(f"Request timeout expired for model '{name}'", decoupled)
        if iterator is not None:
            return iterator
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            event = box.get(timeout=remaining)
        except queue.Empty:
            return error_response(f"Request timeout expired for model '{name}'")
        return _bls_response(event, name)

    def bls_load_model(self, name: str, config: str, files: dict[str, bytes] | None) -> None:
        """``pb_utils.load_model``."""
        try:
            self.load_model(name, config=config or None, files=files)
        except (InferError, repository.ConfigError) as exc:
            message = exc.message if isinstance(exc, InferError) else str(exc)
            raise TritonModelException(f"Failed to load model: {message}") from None

    def bls_unload_model(self, name: str, unload_dependents: bool) -> None:
        """``pb_utils.unload_model``."""
        self.unload_model(name, unload_dependents=unload_dependents)

    def bls_is_model_ready(self, name: str, version: int) -> bool:
        """``pb_utils.is_model_ready``."""
        return self.is_model_ready(name, None if version < 0 else version)

    def log(self, instance: context.InstanceContext | None, level: int, message: str) -> None:
        """``pb_utils.Logger``: kept in :attr:`logs`."""
        name = instance.instance_name if instance is not None else ""
        self.logs.append(LogRecord(name, LogLevel(level).name, message))

    def __repr__(self) -> str:
        return f"<LocalTriton {self.repository} models={sorted(self._models)}>"


_ABANDONED = (
    "the model returned None for this request without sending a response through its response sender; "
    "a real server never answers it"
)


@dataclass
class _EnsembleFlow:
    """One request on its way through an ensemble: the tensors so far and the steps still to run."""

    pending: PendingRequest
    pool: dict[str, Tensor]
    remaining: list[Any]


class _AllOutputs(frozenset):  # type: ignore[type-arg]
    """Requested outputs of a stub without a config: every output it produces."""

    def __contains__(self, item: object) -> bool:
        return True


def _next_step(remaining: Sequence[Any], pool: Mapping[str, Tensor]) -> Any | None:
    """The first of the ensemble steps ``remaining`` whose inputs are all in ``pool``, if any."""
    for step in remaining:
        if all(source in pool for source in step.input_map.values()):
            return step
    return None


def _step_inputs(step: Any, pool: Mapping[str, Tensor]) -> list[Tensor]:
    """The request tensors of an ensemble step, named as the step's model calls them."""
    return [
        Tensor._wrap(name, raw_array(pool[source]), triton_type(pool[source]))
        for name, source in step.input_map.items()
    ]


def _in_ensemble(ensemble: str, error: RequestError) -> RequestError:
    """A step's error as the ensemble's client sees it."""
    return RequestError(error.code, f"in ensemble '{ensemble}', {error.message}")


def _ensemble_deadlock(ensemble: str, pending: PendingRequest) -> RequestError:
    return RequestError(
        "INVALID_ARG",
        f"in ensemble '{ensemble}', {_request_prefix(pending.request_id)}unexpected deadlock, at "
        "least one output is not set while no more ensemble steps can be made",
    )


def _request_prefix(request_id: str) -> str:
    return f"[request id: {request_id or '<id_unknown>'}] "


def _version_number(version: int | str | None) -> int:
    if version is None or version == "":
        return -1
    try:
        return int(version)
    except (TypeError, ValueError):
        raise RequestError("INVALID_ARG", f"invalid model version {version!r}") from None


def _wait(box: queue.SimpleQueue[Event], deadline: float, what: str, seconds: float) -> Event:
    try:
        return box.get(timeout=max(deadline - time.monotonic(), 0.0))
    except queue.Empty:
        raise InferTimeout("UNAVAILABLE", f"{what}: no answer within {seconds:g} s") from None


def _tensors_to_client(response: InferenceResponse) -> Outputs:
    out: Outputs = {}
    for tensor in response.output_tensors():
        array = raw_array(tensor)
        kind = triton_type(tensor)
        if kind == dtypes.TYPE_BYTES:
            out[tensor.name()] = as_bytes_array(array)
        elif kind == dtypes.TYPE_BF16:
            out[tensor.name()] = dtypes.bf16_for_client(array)
        else:
            out[tensor.name()] = array.copy()
    return out


def _client_outputs(event: Event) -> Outputs:
    if event.error_code is not None:
        raise InferError(event.error_code, event.error_message)
    if event.abandoned or event.response is None:
        raise InferTimeout("UNAVAILABLE", _ABANDONED)
    error = event.response.error()
    if error is not None:
        raise InferError(error.code().name, error.message())
    return _tensors_to_client(event.response)


def _bls_error(message: str, decoupled: bool) -> InferenceResponse | ResponseIterator:
    response = error_response(message)
    if not decoupled:
        return response
    iterator = ResponseIterator()
    iterator._put(response)
    return iterator


def _bls_response(event: Event, name: str, last: bool = True) -> InferenceResponse:
    if event.error_code is not None:
        return error_response(event.error_message, last=last)
    if event.abandoned:
        return error_response(f"model '{name}' sent no response: {_ABANDONED}", last=last)
    if event.response is None:
        response = InferenceResponse()
        response._is_last = last
        return response
    error = event.response.error()
    if error is not None:
        return error_response(error.message(), last=last)
    response = InferenceResponse([received(t) for t in event.response.output_tensors()])
    response._is_last = last
    return response


def _iterator_sink(iterator: ResponseIterator) -> Callable[[Event], None]:
    def sink(event: Event) -> None:
        iterator._put(_bls_response(event, "", last=event.final))

    return sink
