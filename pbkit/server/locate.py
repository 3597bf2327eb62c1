"""Find a ``tritonserver`` binary and build the environment it needs.

Two installations are supported, tried in this order:

0. the binary named by ``$PBKIT_TRITONSERVER``, if set;
1. ``tritonserver`` on ``PATH`` (the NGC container: backends live in ``/opt/tritonserver/backends``);
2. the server bundled in the ``nvidia-pytriton`` wheel (``site-packages/pytriton/tritonserver``).

The wheel ships one Python-backend stub per Python version, outside the backend folder, so a backend
folder ``<cache>/python/`` is assembled once (symlinks to ``libtriton_python.so``,
``triton_python_backend_utils.py`` and the stub matching the running interpreter) under
``$XDG_CACHE_HOME/pbkit/`` and reused. The wheel's shared libraries (``nvidia_pytriton.libs``) go on
``LD_LIBRARY_PATH``, followed by the folder of the running interpreter's shared ``libpython`` (so the
stub embeds that library rather than the system's), and the running interpreter's ``bin/`` goes first on
``PATH``: the stub takes its ``sys.prefix`` from the Python it finds there, which is how it sees numpy
and the rest of the environment.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TRITONSERVER_ENV",
    "TritonInstallation",
    "TritonNotFoundError",
    "locate_tritonserver",
    "prepare_pytriton_backends",
]

_INSTALL_HINT = (
    "Install the server bundled with PyTriton (`pip install nvidia-pytriton`, or `pip install pbkit[serve]`), "
    "or run inside an NGC tritonserver container (nvcr.io/nvidia/tritonserver:<tag>-py3) "
    "where `tritonserver` is on PATH."
)
_STUB_NAME = "triton_python_backend_stub"
#: Environment variable naming a tritonserver binary to use instead of searching.
TRITONSERVER_ENV = "PBKIT_TRITONSERVER"
_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class TritonNotFoundError(RuntimeError):
    """No usable tritonserver installation was found; the message says how to install one."""


@dataclass(frozen=True)
class TritonInstallation:
    """A runnable tritonserver: the binary, its backend folder and the environment changes it needs."""

    executable: Path
    backend_directory: Path
    source: str
    """``"path"`` for a ``tritonserver`` found on PATH, ``"pytriton"`` for the wheel's bundled server."""
    version: str | None = None
    cache_directory: Path | None = None
    """Folder of response-cache implementations (``--cache-directory``), when the installation has one."""
    library_paths: tuple[Path, ...] = ()
    """Prepended to ``LD_LIBRARY_PATH``."""
    executable_paths: tuple[Path, ...] = ()
    """Prepended to ``PATH``."""
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment to start tritonserver with: ``base`` (default ``os.environ``) plus this installation's needs."""
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = _prepend_paths(self.library_paths, env.get("LD_LIBRARY_PATH", ""))
        env["PATH"] = _prepend_paths(self.executable_paths, env.get("PATH", os.defpath))
        env.update(self.extra_env)
        return env


def _prepend_paths(paths: tuple[Path, ...], current: str) -> str:
    entries = [str(path) for path in paths]
    entries += [entry for entry in current.split(os.pathsep) if entry and entry not in entries]
    return os.pathsep.join(entries)


def locate_tritonserver(executable: str | os.PathLike[str] | None = None) -> TritonInstallation:
    """Find a tritonserver: ``executable`` if given, else ``$PBKIT_TRITONSERVER``, else ``tritonserver``
    on PATH, else the nvidia-pytriton wheel.

    Raises :class:`TritonNotFoundError` with installation advice when none is usable.
    """
    if executable is None and os.environ.get(TRITONSERVER_ENV):
        executable = os.environ[TRITONSERVER_ENV]
    if executable is not None:
        path = Path(executable)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TritonNotFoundError(f"{path} is not an executable tritonserver. {_INSTALL_HINT}")
        return _system_installation(path)
    on_path = shutil.which("tritonserver")
    if on_path is not None:
        return _system_installation(Path(on_path))
    pytriton_dir = _pytriton_package_dir()
    if pytriton_dir is not None:
        return _pytriton_installation(pytriton_dir)
    raise TritonNotFoundError(
        f"No tritonserver found: none on PATH and nvidia-pytriton is not installed. {_INSTALL_HINT}"
    )


def _system_installation(executable: Path) -> TritonInstallation:
    """A tritonserver laid out as in the NGC image: ``<root>/bin/tritonserver`` next to ``<root>/backends``."""
    root = executable.resolve().parent.parent
    backends = root / "backends"
    if not backends.is_dir():
        backends = Path("/opt/tritonserver/backends")
    if not (backends / "python" / "libtriton_python.so").is_file():
        raise TritonNotFoundError(
            f"tritonserver at {executable} has no Python backend (looked for "
            f"{backends / 'python' / 'libtriton_python.so'}). {_INSTALL_HINT}"
        )
    caches = root / "caches"
    return TritonInstallation(
        executable=executable,
        backend_directory=backends,
        source="path",
        cache_directory=caches if caches.is_dir() else None,
    )


def _pytriton_package_dir() -> Path | None:
    """The installed ``pytriton`` package folder, found without importing it."""
    try:
        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _pytriton_installation(pytriton_dir: Path) -> TritonInstallation:
    dist = pytriton_dir / "tritonserver"
    executable = dist / "bin" / "tritonserver"
    if not executable.is_file():
        raise TritonNotFoundError(
            f"nvidia-pytriton at {pytriton_dir} has no bundled tritonserver. {_INSTALL_HINT}"
        )
    try:
        version: str | None = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        version = None
    libs = pytriton_dir.parent / "nvidia_pytriton.libs"
    caches = dist / "caches"
    return TritonInstallation(
        executable=executable,
        backend_directory=prepare_pytriton_backends(pytriton_dir, version=version),
        source="pytriton",
        version=version,
        cache_directory=caches if caches.is_dir() else None,
        library_paths=tuple(
            path for path in (libs, _interpreter_library_dir()) if path is not None and path.is_dir()
        ),
        executable_paths=(Path(sys.executable).parent,),
    )


def _interpreter_library_dir() -> Path | None:
    """The folder holding the running interpreter's shared ``libpython``, if it has one.

    The stub links ``libpython3.X.so.1.0``; without this folder on the library path it loads the
    system's copy, which may not match the interpreter whose standard library it then uses (pyenv,
    conda): extension modules such as ``_ssl`` then fail with undefined symbols.
    """
    library = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    directory = sysconfig.get_config_var("LIBDIR")
    if not (library and directory and sysconfig.get_config_var("Py_ENABLE_SHARED")):
        return None
    return Path(directory) if (Path(directory) / library).is_file() else None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "pbkit" / "tritonserver-backends"


def prepare_pytriton_backends(
    pytriton_dir: Path, *, version: str | None = None, cache_root: Path | None = None
) -> Path:
    """Assemble (once) a backend folder holding ``python/`` for the wheel at ``pytriton_dir`` and this Python.

    The folder is keyed by the wheel's version, the Python version and the wheel's location, and is
    created atomically (built aside, then renamed), so concurrent callers are safe. Returns the folder
    to pass as ``--backend-directory``.
    """
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    dist = pytriton_dir / "tritonserver"
    stub = dist / "python_backend_stubs" / python_version / _STUB_NAME
    if not stub.is_file():
        stubs_dir = dist / "python_backend_stubs"
        available = sorted(p.name for p in stubs_dir.iterdir()) if stubs_dir.is_dir() else []
        raise TritonNotFoundError(
            f"nvidia-pytriton at {pytriton_dir} has no Python-backend stub for Python {python_version} "
            f"(it has: {', '.join(available) or 'none'}). Use one of those Python versions or a tritonserver "
            f"container. {_INSTALL_HINT}"
        )
    sources = {name: dist / "backends" / "python" / name for name in _BACKEND_FILES}
    sources[_STUB_NAME] = stub
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        raise TritonNotFoundError(
            f"nvidia-pytriton at {pytriton_dir} is incomplete: missing {', '.join(missing)}"
        )

    location_key = hashlib.sha256(str(pytriton_dir.resolve()).encode()).hexdigest()[:12]
    key = f"pytriton-{version or 'unknown'}-py{python_version}-{location_key}"
    for root in (cache_root or _cache_root(), Path(tempfile.gettempdir()) / f"pbkit-{os.getuid()}"):
        try:
            return _ensure_backend_folder(root / key, sources)
        except OSError:
            continue
    raise TritonNotFoundError(f"could not create a backend folder under {_cache_root()} or the temp folder")


def _backend_folder_is_valid(folder: Path, sources: Mapping[str, Path]) -> bool:
    python_dir = folder / "python"
    return all(
        (python_dir / name).is_file() and (python_dir / name).resolve() == source.resolve()
        for name, source in sources.items()
    )


def _ensure_backend_folder(folder: Path, sources: Mapping[str, Path]) -> Path:
    if _backend_folder_is_valid(folder, sources):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        (staging / "python").mkdir()
        for name, source in sources.items():
            (staging / "python" / name).symlink_to(source)
        if folder.exists():
            # A stale folder (the wheel moved or was upgraded): move it aside, then replace it.
            stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}-stale-", dir=folder.parent))
            try:
                os.replace(folder, stale / "old")
            except OSError:
                pass
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, folder)
        except OSError:
            # Another process won the race; use its folder if it is good.
            if not _backend_folder_is_valid(folder, sources):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
