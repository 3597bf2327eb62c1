"""Small model repositories written on the fly for the harness tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "python_backend_examples"

ModelWriter = Callable[..., Path]


def write_model(
    repository: Path,
    name: str,
    config: str,
    code: str | None,
    *,
    version: int = 1,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``<repository>/<name>/config.pbtxt`` and ``<name>/<version>/model.py`` (plus ``files``,
    relative to the model folder); ``config`` and ``code`` are dedented."""
    model_dir = repository / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    if config is not None:
        (model_dir / "config.pbtxt").write_text(textwrap.dedent(config))
    if code is not None:
        (model_dir / str(version) / "model.py").write_text(textwrap.dedent(code))
    for relative, content in (files or {}).items():
        path = model_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    return model_dir


ECHO_CONFIG = """
    name: "{name}"
    backend: "python"
    max_batch_size: {max_batch_size}
    input [ {{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }} ]
    output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }} ]
    {extra}
"""

ECHO_CODE = """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            return [
                pb_utils.InferenceResponse([pb_utils.Tensor("Y", r.inputs()[0].as_numpy())]) for r in requests
            ]
"""


def echo_config(name: str, max_batch_size: int = 0, extra: str = "") -> str:
    """A one-input one-output FP32 config."""
    return ECHO_CONFIG.format(name=name, max_batch_size=max_batch_size, extra=extra)
