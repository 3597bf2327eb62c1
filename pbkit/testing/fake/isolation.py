"""Per-model module namespaces: what one stub process per model instance gives each model in Triton.

The stub appends ``<repo>/<model>/<version>`` and ``<repo>/<model>`` to ``sys.path`` and imports
``<version>.model``; sibling files then import as top-level modules. In one process, two models with
a ``utils.py`` each would collide, so every model instance gets a :class:`ModelNamespace`:

* its modules are loaded with a private ``__import__`` (through their ``__builtins__``), so an
  ``import`` statement in model code resolves that model's siblings first, at any time and from any
  thread;
* a top-level name resolves as in the stub's process: a module already imported (numpy, pbkit, ...)
  is shared; otherwise the first ``sys.path`` entry that has it wins, with the model's own folders
  searched after the process's entries (they are appended), or first when model code put them first
  (generated pbkit models insert their version folder at ``sys.path[0]``);
* private modules are also put in ``sys.modules`` under their real names while that model's code
  runs (:meth:`ModelNamespace.activate`), so ``inspect``, ``dataclasses``, ``typing.get_type_hints``
  and ``importlib.import_module`` find them; ``sys.path`` changes made while a model is imported
  are taken back afterwards and kept as that model's own search path;
* a module of the model's folders not imported yet is still found later, from code that runs for
  the model (``setup`` doing ``import network`` in a module that was imported the ordinary way, or
  ``importlib.import_module``): a finder at the end of ``sys.meta_path`` looks in the folders of the
  instance the calling code runs for, as the stub's ``sys.path`` would.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from .context import current_instance

_original_import = builtins.__import__
#: Every private module, so that ``sys.modules`` entries owned by some model are not taken as shared.
_private_modules: weakref.WeakSet[ModuleType] = weakref.WeakSet()
#: Serializes imports of model code and edits of ``sys.path``/``sys.modules``.
import_lock = threading.RLock()
#: The namespace whose modules ``sys.modules`` shows (the one activated last).
_shown: ModelNamespace | None = None


def _is_private(module: Any) -> bool:
    try:
        return module in _private_modules
    except TypeError:
        return False


def _resolve_relative(name: str, package: str | None, level: int) -> str:
    if not package:
        raise ImportError("attempted relative import with no known parent package")
    bits = package.rsplit(".", level - 1)
    if len(bits) < level:
        raise ImportError("attempted relative import beyond top-level package")
    base = bits[0]
    return f"{base}.{name}" if name else base


def _package_of(globals_: dict[str, Any] | None) -> str | None:
    if not globals_:
        return None
    package = globals_.get("__package__")
    if package is None and globals_.get("__spec__") is not None:
        package = globals_["__spec__"].parent
    if package is None:
        name = globals_.get("__name__", "")
        package = name if "__path__" in globals_ else name.rpartition(".")[0]
    return package


class ModelNamespace:
    """The private modules and search path of one model instance."""

    def __init__(self, label: str, version_dir: Path, model_dir: Path) -> None:
        self.label = label
        self.front_paths: list[str] = []
        self.back_paths: list[str] = [str(version_dir), str(model_dir)]
        self.modules: dict[str, ModuleType] = {}
        self._shared: set[str] = set()
        self._lock = threading.RLock()
        self.builtins: dict[str, Any] = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import

    # ------------------------------------------------------------------ resolution
    def owned_paths(self) -> list[str]:
        """The search-path entries that belong to this model."""
        return self.front_paths + self.back_paths

    def _search_path(self) -> Iterator[tuple[str, bool]]:
        owned = set(self.owned_paths())
        for entry in self.front_paths:
            yield entry, True
        for entry in list(sys.path):
            if entry not in owned:
                yield entry, False
        for entry in self.back_paths:
            yield entry, True

    def _is_private_name(self, top: str) -> bool:
        if top in self.modules:
            return True
        if top in self._shared:
            return False
        existing = sys.modules.get(top)
        private = False
        if existing is not None and not _is_private(existing):
            private = False
        elif top in sys.builtin_module_names:
            private = False
        else:
            for entry, owned in self._search_path():
                try:
                    spec = importlib.machinery.PathFinder.find_spec(top, [entry])
                except (ImportError, ValueError):
                    spec = None
                if spec is not None:
                    private = owned
                    break
        if not private:
            self._shared.add(top)
        return private

    def _find_top(self, top: str) -> importlib.machinery.ModuleSpec | None:
        for entry, owned in self._search_path():
            if not owned:
                continue
            spec = importlib.machinery.PathFinder.find_spec(top, [entry])
            if spec is not None:
                return spec
        return None

    def load(self, fullname: str) -> ModuleType:
        """Import the private module ``fullname`` (and its parents) into this namespace."""
        with self._lock:
            module = self.modules.get(fullname)
            if module is not None:
                return module
            parent_name, _, child = fullname.rpartition(".")
            if parent_name:
                parent = self.load(parent_name)
                search = getattr(parent, "__path__", None)
                if search is None:
                    raise ModuleNotFoundError(
                        f"No module named '{fullname}'; '{parent_name}' is not a package", name=fullname
                    )
                spec = importlib.machinery.PathFinder.find_spec(fullname, list(search))
            else:
                parent = None
                spec = self._find_top(fullname)
            if spec is None:
                raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
            module = importlib.util.module_from_spec(spec)
            module.__builtins__ = self.builtins  # type: ignore[attr-defined]
            self.modules[fullname] = module
            _private_modules.add(module)
            previous = sys.modules.get(fullname)
            sys.modules[fullname] = module
            try:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader.exec_module(module)
            except BaseException:
                del self.modules[fullname]
                if sys.modules.get(fullname) is module:
                    if previous is not None:
                        sys.modules[fullname] = previous
                    else:
                        del sys.modules[fullname]
                raise
            module = self.modules[fullname]
            if parent is not None:
                setattr(parent, child, module)
            return module

    def _import(
        self,
        name: str,
        globals: dict[str, Any] | None = None,
        locals: dict[str, Any] | None = None,
        fromlist: tuple[str, ...] | list[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        if level > 0:
            absolute = _resolve_relative(name, _package_of(globals), level)
            if absolute.partition(".")[0] not in self.modules:
                return _original_import(name, globals, locals, fromlist, level)
            module = self.load(absolute)
            return self._with_fromlist(module, fromlist) if fromlist else module
        top = name.partition(".")[0]
        if not self._is_private_name(top):
            return _original_import(name, globals, locals, fromlist, level)
        module = self.load(name)
        if fromlist:
            return self._with_fromlist(module, fromlist)
        return self.modules[top]

    def _with_fromlist(self, module: ModuleType, fromlist: tuple[str, ...] | list[str]) -> ModuleType:
        if not hasattr(module, "__path__"):
            return module
        for item in fromlist:
            if item == "*":
                for sub in getattr(module, "__all__", ()):
                    if not hasattr(module, sub):
                        self._try_load(f"{module.__name__}.{sub}")
            elif not hasattr(module, item):
                self._try_load(f"{module.__name__}.{item}")
        return module

    def _try_load(self, fullname: str) -> None:
        try:
            self.load(fullname)
        except ModuleNotFoundError as exc:
            if exc.name != fullname:
                raise

    # ------------------------------------------------------------------ life cycle
    @contextmanager
    def importing(self) -> Iterator[None]:
        """Run the model's import like the stub: its folders appended to ``sys.path`` meanwhile.

        Afterwards ``sys.path`` is restored; entries the model added become its own search path, and
        modules imported the ordinary way from its folders (``importlib.import_module``) become private.
        """
        with import_lock:
            self.activate()
            saved_path = list(sys.path)
            saved_modules = set(sys.modules)
            sys.path.extend(p for p in self.back_paths if p not in sys.path)
            try:
                yield
            finally:
                added = [p for p in sys.path if p not in saved_path and p not in self.back_paths]
                for entry in added:
                    if sys.path.index(entry) < len(saved_path) // 2 or sys.path.index(entry) == 0:
                        self.front_paths.append(entry)
                    else:
                        self.back_paths.append(entry)
                sys.path[:] = saved_path
                self._adopt(set(sys.modules) - saved_modules)

    def _adopt(self, names: set[str]) -> None:
        roots = [os.path.abspath(p) + os.sep for p in self.owned_paths()]
        for name in names:
            module = sys.modules.get(name)
            if module is None or name in self.modules:
                continue
            location = getattr(module, "__file__", None) or ""
            if location and any(os.path.abspath(location).startswith(root) for root in roots):
                self.modules[name] = module
                _private_modules.add(module)

    def activate(self) -> None:
        """Make this model's modules the ones ``sys.modules`` shows under their names, and take out those
        of the model that ran before, so an ordinary import finds this model's sibling, not that one's."""
        global _shown
        modules = sys.modules
        previous = _shown
        if previous is not None and previous is not self:
            for name, module in list(previous.modules.items()):
                if name not in self.modules and modules.get(name) is module:
                    del modules[name]
        _shown = self
        for name, module in self.modules.items():
            current = modules.get(name)
            if current is not module and (current is None or _is_private(current)):
                modules[name] = module

    def discard(self) -> None:
        """Remove this model's modules from ``sys.modules``."""
        global _shown
        with import_lock:
            if _shown is self:
                _shown = None
            for name, module in self.modules.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
            self.modules.clear()


class _NamespaceLoader(importlib.abc.Loader):
    """Loads a top-level module privately into the namespace that found it."""

    def __init__(self, namespace: ModelNamespace) -> None:
        self.namespace = namespace

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.namespace.load(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing left to do: :meth:`ModelNamespace.load` ran the module."""


class _RunningModelFinder(importlib.abc.MetaPathFinder):
    """Finds top-level modules in the folders of the model instance the calling code runs for."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None or "." in fullname:
            return None
        instance = current_instance()
        namespace = getattr(instance, "namespace", None)
        if not isinstance(namespace, ModelNamespace) or namespace._find_top(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _NamespaceLoader(namespace))


_finder = _RunningModelFinder()


def install_finder() -> None:
    """Put the running-model finder at the end of ``sys.meta_path`` (once)."""
    with import_lock:
        if _finder not in sys.meta_path:
            sys.meta_path.append(_finder)


def import_model_module(namespace: ModelNamespace, version: str, filename: str) -> ModuleType:
    """Import ``<version>.<filename without .py>`` in ``namespace``, as the stub does."""
    if not filename.endswith(".py"):
        raise ImportError(f"Model name must end with '.py'. Model name is \"{filename}\".")
    with namespace.importing():
        return namespace.load(f"{version}.{filename[:-3]}")
