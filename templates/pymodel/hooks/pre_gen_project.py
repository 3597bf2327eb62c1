"""Check the answers before the project is written; exit 1 with a message naming the bad answer.

Cookiecutter renders this file with the answers filled in, then runs it.
"""

from __future__ import annotations

import importlib.util
import json
import keyword
import re
import sys

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")
MODEL_NAME = str(ANSWERS["model_name"])
CLASS_NAME = str(ANSWERS["class_name"])
DESCRIPTION = str(ANSWERS["description"])
INPUT_NAME = str(ANSWERS["input_name"])
OUTPUT_NAME = str(ANSWERS["output_name"])
DTYPE = str(ANSWERS["dtype"])
DIMS = str(ANSWERS["dims"])
USE_TORCH = bool(ANSWERS["use_torch"])

#: File names ``pbkit build`` treats specially, or that would shadow what the model imports.
RESERVED_MODULES = {"model", "conftest", "setup", "pbkit", "numpy", "torch", "tests", "test"}


def problems() -> list[str]:
    found = []
    if not re.fullmatch(r"[a-z][a-z0-9_]*", MODEL_NAME) or keyword.iskeyword(MODEL_NAME):
        found.append(
            f"model_name {MODEL_NAME!r}: use lower-case letters, digits and underscores, starting with a "
            "letter (it names the Triton model, the Python module and the folder)"
        )
    elif MODEL_NAME in RESERVED_MODULES or MODEL_NAME.startswith("test_"):
        found.append(f"model_name {MODEL_NAME!r} is reserved: pbkit build skips or shadows that module name")
    elif importlib.util.find_spec(MODEL_NAME) is not None:
        found.append(
            f"model_name {MODEL_NAME!r} is the name of an importable module; the model's module would "
            "shadow it (or be shadowed by it) inside Triton, so choose another name"
        )
    if any(c in DESCRIPTION for c in '"\\\n') or not DESCRIPTION.strip():
        found.append("description: give one non-empty line without double quotes or backslashes")
    if not re.fullmatch(r"[A-Z][A-Za-z0-9_]*", CLASS_NAME) or keyword.iskeyword(CLASS_NAME):
        found.append(f"class_name {CLASS_NAME!r}: use a CamelCase Python identifier")
    for what, name in (("input_name", INPUT_NAME), ("output_name", OUTPUT_NAME)):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or keyword.iskeyword(name) or name == "self":
            found.append(f"{what} {name!r}: use a Python identifier (it is predict's parameter or key)")
    if INPUT_NAME == OUTPUT_NAME:
        found.append(f"input_name and output_name are both {INPUT_NAME!r}; give them different names")
    if not re.fullmatch(r"\s*-?\d+(\s*,\s*-?\d+)*\s*", DIMS) or any(
        int(d) == 0 or int(d) < -1 for d in DIMS.split(",")
    ):
        found.append(
            f"dims {DIMS!r}: give comma-separated sizes, each positive or -1 (variable), e.g. 4 or 3,-1"
        )
    if USE_TORCH and DTYPE == "BYTES":
        found.append(
            "use_torch with dtype BYTES: torch has no string tensors; choose a numeric dtype or no torch"
        )
    return found


if __name__ == "__main__":
    errors = problems()
    for error in errors:
        print(f"pbkit new: {error}", file=sys.stderr)
    sys.exit(1 if errors else 0)
