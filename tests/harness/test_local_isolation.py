"""Each model instance imports its code in its own namespace, as each stub process does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from pbkit.testing.local import LocalTriton

from .repos import ModelWriter

CONFIG = """
    name: "{name}"
    backend: "python"
    input [ {{ name: "X" data_type: TYPE_INT32 dims: [ 1 ] }} ]
    output [ {{ name: "WHO" data_type: TYPE_STRING dims: [ -1 ] }} ]
    {extra}
"""

REPORTING_MODEL = """
    import threading

    import numpy as np
    import triton_python_backend_utils as pb_utils

    import helpers


    class TritonPythonModel:
        def execute(self, requests):
            found = {{}}

            def late_import():
                import helpers as again  # a lazy import, from a thread the model started

                found["thread"] = again.WHO

            thread = threading.Thread(target=late_import)
            thread.start()
            thread.join()
            who = [helpers.WHO, found["thread"], helpers.describe(), {extra}]
            return [
                pb_utils.InferenceResponse([pb_utils.Tensor("WHO", np.array(who, dtype=object))]) for _ in requests
            ]
"""

HELPERS = """
    from __future__ import annotations

    import dataclasses
    import importlib
    import typing

    WHO = "{name}"


    @dataclasses.dataclass
    class Record:
        value: np_array_type


    np_array_type = int


    def describe() -> str:
        hints = typing.get_type_hints(Record)
        sibling = importlib.import_module("helpers")
        return f"{{WHO}}:{{hints['value'].__name__}}:{{sibling is importlib.import_module(__name__)}}"
"""


def who(local: LocalTriton, name: str) -> list[str]:
    return [item.decode() for item in local.infer(name, {"X": np.array([1], np.int32)})["WHO"]]


def test_two_models_with_the_same_sibling_module(repo: Path, model: ModelWriter) -> None:
    for name in ("left", "right"):
        model(
            name,
            CONFIG.format(name=name, extra=""),
            REPORTING_MODEL.format(extra="'-'"),
            files={"1/helpers.py": HELPERS.format(name=name)},
        )
    modules_before = set(sys.modules)
    with LocalTriton(repo) as local:
        assert who(local, "left") == ["left", "left", "left:int:True", "-"]
        assert who(local, "right") == ["right", "right", "right:int:True", "-"]
        assert who(local, "left")[0] == "left"
    assert not {"helpers", "1", "1.model"} & (set(sys.modules) - modules_before)


def test_module_level_state_is_per_instance(repo: Path, model: ModelWriter) -> None:
    model(
        "counted",
        CONFIG.format(name="counted", extra="instance_group [ { count: 2 kind: KIND_CPU } ]"),
        """
        import numpy as np
        import triton_python_backend_utils as pb_utils

        IMPORTS = []
        IMPORTS.append(1)


        class TritonPythonModel:
            def initialize(self, args):
                pb_utils.Logger.log_info(f"{args['model_instance_name']} sees {len(IMPORTS)} import(s)")

            def execute(self, requests):
                return []
        """,
    )
    with LocalTriton(repo) as local:
        assert [r.message for r in local.logs] == [
            "counted_0_0 sees 1 import(s)",
            "counted_0_1 sees 1 import(s)",
        ]


def test_imported_modules_are_shared_and_site_packages_win(repo: Path, model: ModelWriter) -> None:
    model(
        "shadowing",
        CONFIG.format(name="shadowing", extra=""),
        """
        import json

        import numpy as np
        import triton_python_backend_utils as pb_utils

        import pbkit


        class TritonPythonModel:
            def execute(self, requests):
                who = [json.__name__, str(hasattr(json, "dumps")), pbkit.__file__]
                return [pb_utils.InferenceResponse([pb_utils.Tensor("WHO", np.array(who, dtype=object))]) for _ in requests]
        """,
        files={"1/json.py": "dumps = None\n", "1/pbkit/__init__.py": "raise ImportError('vendored copy')\n"},
    )
    import pbkit

    with LocalTriton(repo) as local:
        assert who(local, "shadowing") == ["json", "True", pbkit.__file__]


def test_relative_imports_and_the_model_folder(repo: Path, model: ModelWriter) -> None:
    model(
        "relative",
        CONFIG.format(name="relative", extra=""),
        """
        import numpy as np
        import triton_python_backend_utils as pb_utils

        import folder_module
        from . import helpers as relative_helpers
        from .pkg import inner


        class TritonPythonModel:
            def execute(self, requests):
                who = [relative_helpers.__name__, inner.VALUE, folder_module.VALUE, __name__]
                return [pb_utils.InferenceResponse([pb_utils.Tensor("WHO", np.array(who, dtype=object))]) for _ in requests]
        """,
        files={
            "1/helpers.py": "",
            "1/pkg/__init__.py": "",
            "1/pkg/inner.py": "from .. import helpers\nVALUE = 'inner:' + helpers.__name__\n",
            "folder_module.py": "VALUE = 'from the model folder'\n",
        },
    )
    with LocalTriton(repo) as local:
        assert who(local, "relative") == ["1.helpers", "inner:1.helpers", "from the model folder", "1.model"]


def test_pbkit_built_models_reuse_the_running_pbkit(tmp_path: Path) -> None:
    project = Path(__file__).resolve().parents[1] / "fixtures" / "core_project"
    assert (project / "core_models.py").is_file(), f"the core test project is missing from {project}"
    repository = tmp_path / "built"
    built = subprocess.run(
        [sys.executable, "-m", "pbkit.cli.main", "build", str(project), "-o", str(repository)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert any(repository.glob("*/1/pbkit/runtime"))  # each version folder vendors pbkit
    import pbkit.runtime

    with LocalTriton(repository) as local:
        assert all(state.ready for state in local.model_states()), local.model_states()
        vendored = [
            name
            for name, module in sys.modules.items()
            if name.startswith("pbkit") and str(repository) in (getattr(module, "__file__", "") or "")
        ]
        assert vendored == []
        out = local.infer("scale", {"A": np.ones((2, 3), np.float32)}, outputs=["SCALED"])
        assert out["SCALED"].shape == (2, 3)
    assert sys.modules["pbkit.runtime"] is pbkit.runtime


LAZY_MODEL = """
    import importlib
    import os
    import sys

    import numpy as np
    import triton_python_backend_utils as pb_utils

    # Like a generated pbkit model.py: its folder first on sys.path, then an ordinary import.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    entry = importlib.import_module("entry")


    class TritonPythonModel:
        def initialize(self, args):
            self.found = entry.setup()  # imports a sibling only now, with the ordinary import machinery

        def execute(self, requests):
            who = [self.found, entry.later()]
            return [pb_utils.InferenceResponse([pb_utils.Tensor("WHO", np.array(who, dtype=object))]) for _ in requests]
"""

LAZY_ENTRY = """
    import importlib


    def setup():
        import network  # not imported until initialize

        return network.WHO


    def later():
        return importlib.import_module("late").WHO
"""


def test_siblings_imported_late_by_ordinarily_imported_modules(repo: Path, model: ModelWriter) -> None:
    """A module loaded by ``importlib.import_module`` at import time imports its siblings later (in
    ``initialize`` and ``execute``), as in the stub, where the model's folder stays on ``sys.path``."""
    for name in ("first", "second"):
        model(
            name,
            CONFIG.format(name=name, extra=""),
            LAZY_MODEL,
            files={
                "1/entry.py": LAZY_ENTRY,
                "1/network.py": f"WHO = 'network of {name}'\n",
                "1/late.py": f"WHO = 'late of {name}'\n",
            },
        )
    modules_before = set(sys.modules)
    with LocalTriton(repo) as local:
        assert {s.name: s.reason for s in local.model_states() if not s.ready} == {}
        assert who(local, "first") == ["network of first", "late of first"]
        assert who(local, "second") == ["network of second", "late of second"]
    assert not {"entry", "network", "late"} & (set(sys.modules) - modules_before)
