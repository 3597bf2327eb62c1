"""Helpers shared by the BLS tests."""

from __future__ import annotations

import shutil
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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


ORT_DECLARATION = '''
"""Submodel ``ort_projector``: the projector network, served from its exported ONNX file."""

import numpy as np

import pbkit

ONNX_FILE = "exported/ort_projector.onnx"


class OnnxRuntimeProjector:
    """Python variant: runs the exported file with onnxruntime."""

    def setup(self, ctx: pbkit.SetupContext) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(ctx.path(ONNX_FILE)), providers=["CPUExecutionProvider"])

    def predict(self, features: np.ndarray) -> dict[str, np.ndarray]:
        [projection] = self.session.run(["projection"], {"features": features})
        return {"projection": projection}


ort_projector = pbkit.Submodel(
    "ort_projector",
    inputs=[pbkit.Input("features", "FP32", [4])],
    outputs=[pbkit.Output("projection", "FP32", [8])],
    max_batch_size=8,
    extra_files=[ONNX_FILE],
    variants=[pbkit.Onnx(ONNX_FILE), pbkit.PythonVariant(OnnxRuntimeProjector)],
)
'''


def write_ort_project(folder: Path) -> Path:
    """Write a one-submodel project whose Python variant runs the exported ONNX file with onnxruntime.

    It shows serving an exported file either with Triton's ONNX Runtime backend
    (``--variant onnx``) or, where the image has no such backend, with onnxruntime inside a
    Python-backend model (``--variant python``), which ships the file through ``extra_files``.
    The file itself comes from exporting ``bls_networks.make_projector()``.
    """
    folder.mkdir(parents=True)
    (folder / "ort_submodels.py").write_text(ORT_DECLARATION.lstrip())
    return folder


Stub = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class Towers:
    """The two networks as LocalTriton stubs (functions of a dict of numpy arrays)."""

    def __init__(self, networks: Any, barrier: threading.Barrier | None = None) -> None:
        self.encoder_network = networks.make_encoder()
        self.projector_network = networks.make_projector()
        self.barrier = barrier

    def _meet(self) -> None:
        if self.barrier is not None:
            self.barrier.wait()  # BrokenBarrierError after its timeout when the other never comes

    def encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        self._meet()
        with torch.no_grad():
            return {
                "embedding": self.encoder_network(torch.from_numpy(inputs["features"]))["embedding"].numpy()
            }

    def projector(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        self._meet()
        with torch.no_grad():
            return {"projection": self.projector_network(torch.from_numpy(inputs["features"])).numpy()}

    def stubs(self) -> dict[str, Stub]:
        return {"bls_encoder": self.encoder, "bls_projector": self.projector}

    def expected(self, features: np.ndarray) -> dict[str, np.ndarray]:
        embedding = self.encoder({"features": features})["embedding"]
        projection = self.projector({"features": features})["projection"]
        return {
            "embedding": embedding,
            "projection": projection,
            "score": (embedding * projection).sum(1, keepdims=True),
        }
