"""Write repository files without ever following a symlink out of the output folder."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


class UnsafePathError(Exception):
    """A write would leave the output folder or go through a symbolic link."""


class SafeTree:
    """A folder that files are written into, refusing symlinks and escapes."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        if root.is_symlink():
            raise UnsafePathError(f"output folder {root} is a symbolic link")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def _target(self, relative: str | Path) -> Path:
        relative = Path(relative)
        if relative.is_absolute() or ".." in relative.parts:
            raise UnsafePathError(f"refusing to write {relative}: it must stay inside {self.root}")
        current = self.root
        for part in relative.parts[:-1]:
            current = current / part
            if current.is_symlink():
                raise UnsafePathError(f"refusing to write through symbolic link {current}")
        return self.root / relative

    def mkdir(self, relative: str | Path) -> Path:
        path = self._target(relative)
        if path.is_symlink():
            raise UnsafePathError(f"refusing to use symbolic link {path} as a folder")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_bytes(self, relative: str | Path, data: bytes, *, mode: int = 0o644) -> Path:
        path = self._target(relative)
        self.mkdir(Path(relative).parent) if Path(relative).parent != Path(".") else None
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, mode)
        except OSError as exc:
            if path.is_symlink():
                raise UnsafePathError(f"refusing to write through symbolic link {path}") from exc
            raise
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return path

    def write_text(self, relative: str | Path, text: str) -> Path:
        return self.write_bytes(relative, text.encode("utf-8"))

    def copy_file(self, source: Path, relative: str | Path) -> Path:
        return self.write_bytes(relative, Path(source).read_bytes())

    def copy_tree(
        self, source: Path, relative: str | Path, *, skip: set[str] = frozenset({"__pycache__"})
    ) -> None:
        """Copy a folder's regular files; links inside the source are copied as the files they name."""
        source = Path(source)
        for entry in sorted(source.iterdir()):
            if entry.name in skip or entry.name.startswith("."):
                continue
            target = Path(relative) / entry.name
            if entry.is_dir():
                self.copy_tree(entry, target, skip=skip)
            elif entry.is_file():
                self.copy_file(entry, target)

    def remove(self, relative: str | Path) -> None:
        """Delete a file or folder inside the tree (a link is removed, never followed)."""
        path = self._target(relative)
        try:
            info = path.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path)
        else:
            path.unlink()
