"""A model project's own modules, imported in a test the way Triton's stub imports them.

Inside Triton a model's folder is first on ``sys.path``, so its helper modules import each other by
top-level name (``from networks import Encoder``). Two projects often use the same generic names
(``networks``, ``common``, ``utils``), so a test session that imports both by plain ``import`` gets
whichever came first. :class:`ProjectModules` imports one project's modules with its folder first on
``sys.path``, then takes those names out of ``sys.modules`` again; the modules it loaded keep their
references to each other::

    whisper = ProjectModules("models/whisper", ["features", "networks", "decoding"])
    features = whisper.features                      # or whisper["features"]

    with whisper.importable():                       # for code that imports lazily, e.g. in setup()
        model.setup(context)
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType


class ProjectModules:
    """The top-level modules ``names`` of the project folder ``folder``, imported as Triton would."""

    def __init__(self, folder: str | Path, names: Iterable[str]) -> None:
        self.folder = Path(folder).resolve()
        self.names = tuple(names)
        with self._isolated():
            self._modules = {name: importlib.import_module(name) for name in self.names}

    def __getitem__(self, name: str) -> ModuleType:
        return self._modules[name]

    def __getattr__(self, name: str) -> ModuleType:
        modules = self.__dict__.get("_modules", {})
        if name in modules:
            return modules[name]
        raise AttributeError(f"{name!r} is not one of the modules of {self.__dict__.get('folder')}")

    @contextlib.contextmanager
    def importable(self) -> Iterator[None]:
        """Within the block, ``import <name>`` finds these same module objects, and other modules of the
        folder can be imported (they are forgotten afterwards)."""
        with self._isolated():
            sys.modules.update(self._modules)
            yield

    @contextlib.contextmanager
    def _isolated(self) -> Iterator[None]:
        """The folder first on ``sys.path`` and its names free in ``sys.modules``; afterwards, what
        ``sys.modules`` held under those names is back and the folder's modules are forgotten."""
        before = set(sys.modules)
        saved = {name: sys.modules.pop(name) for name in self.names if name in sys.modules}
        sys.path.insert(0, str(self.folder))
        try:
            yield
        finally:
            sys.path.remove(str(self.folder))
            for name in set(sys.modules) - before:
                if self._from_folder(sys.modules.get(name)):
                    sys.modules.pop(name, None)
            for name in self.names:
                sys.modules.pop(name, None)
            sys.modules.update(saved)

    def _from_folder(self, module: ModuleType | None) -> bool:
        origin = getattr(module, "__file__", None)
        return origin is not None and Path(origin).resolve().parent == self.folder

    def __repr__(self) -> str:
        return f"<ProjectModules {self.folder} {list(self.names)}>"
