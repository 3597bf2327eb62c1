"""Helpers shared by the BLS tests."""

from __future__ import annotations

import stat
import sys
from pathlib import Path


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
