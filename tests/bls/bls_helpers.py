"""Helpers shared by the BLS tests."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "bls_project"


def copy_project(destination: Path) -> Path:
    """A copy of the BLS test project (without exports or caches) at ``destination``."""
    shutil.copytree(FIXTURE, destination, ignore=shutil.ignore_patterns("__pycache__", "exported"))
    return destination


class FakeTrtexec:
    """A ``trtexec`` stand-in: records its arguments next to it and writes the engine file.

    Like the real one it fails (exit 3) when the ONNX file it is given does not exist.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "trtexec"
        self.path.write_text(
            f"#!{sys.executable}\n"
            "import pathlib, sys\n"
            "args = dict(a.lstrip('-').split('=', 1) for a in sys.argv[1:] if '=' in a)\n"
            "pathlib.Path(__file__).with_name('argv.txt').write_text('\\n'.join(sys.argv[1:]))\n"
            "if not pathlib.Path(args['onnx']).is_file():\n"
            "    print('Failed to parse onnx file', args['onnx'])\n"
            "    sys.exit(3)\n"
            "pathlib.Path(args['saveEngine']).write_bytes(b'engine built from ' + args['onnx'].encode())\n"
        )
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def argv(self) -> list[str]:
        """The arguments of the last call."""
        return self.path.with_name("argv.txt").read_text().splitlines()


PROJECT_MODULES = ("bls_networks", "bls_submodels", "bls_orchestrators", "bls_export")


class IsolatedModules:
    """Keep the test project's top-level modules out of ``sys.modules`` once the block ends."""

    def __enter__(self) -> IsolatedModules:
        self.saved = {name: sys.modules.pop(name) for name in PROJECT_MODULES if name in sys.modules}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name in PROJECT_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(self.saved)
