"""``pbkit new NAME``: start a model project from the ``pymodel`` cookiecutter template.

The template (``templates/pymodel`` in the source tree, shipped in the package as ``pbkit/_templates``)
asks for the model and class name, one input and one output tensor (name, data type, dims), batching,
torch and decoupled mode. Each question has an option here; with ``--no-input`` (the default when
standard input is not a terminal) the options and the template's defaults answer every question
without prompting.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The template as the package ships it (in a source checkout, ``pbkit/_templates`` links to ``templates/``).
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "_templates" / "pymodel"

#: The template's questions that ``new_project`` accepts as keyword arguments.
ANSWER_KEYS = (
    "class_name",
    "description",
    "input_name",
    "output_name",
    "dtype",
    "dims",
    "batching",
    "use_torch",
    "decoupled",
)
DTYPES = ("FP32", "FP16", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL", "BYTES")


class TemplateError(RuntimeError):
    """The project could not be generated; the message says why."""


def default_template() -> Path:
    """The ``pymodel`` template folder, or :class:`TemplateError` when this installation lacks it."""
    if not (TEMPLATE_DIR / "cookiecutter.json").is_file():
        raise TemplateError(
            f"the pymodel template is not at {TEMPLATE_DIR} (this pbkit was installed without it); "
            "pass --template /path/to/pbkit/templates/pymodel"
        )
    return TEMPLATE_DIR


def new_project(
    name: str,
    output_dir: str | Path = ".",
    *,
    no_input: bool = True,
    overwrite: bool = False,
    template: str | Path | None = None,
    **answers: Any,
) -> Path:
    """Render the template for model ``name`` under ``output_dir`` and return the new project folder.

    ``answers`` are the template's questions (:data:`ANSWER_KEYS`); booleans may be given as ``True``/
    ``False`` or as ``"yes"``/``"no"``. Answers left out take the template's defaults, or are asked for
    when ``no_input`` is false. Raises :class:`TemplateError` on a bad answer or an existing folder.
    """
    from cookiecutter.exceptions import CookiecutterException, FailedHookException, OutputDirExistsException
    from cookiecutter.main import cookiecutter

    unknown = sorted(set(answers) - set(ANSWER_KEYS))
    if unknown:
        raise TypeError(f"unknown template answers {unknown}; expected some of {list(ANSWER_KEYS)}")
    import pbkit

    context: dict[str, Any] = {"model_name": name, "_pbkit_version": pbkit.__version__}
    context.update({key: value for key, value in answers.items() if value is not None})
    template_dir = Path(template) if template is not None else default_template()
    try:
        created = cookiecutter(
            str(template_dir),
            no_input=no_input,
            extra_context=context,
            output_dir=str(output_dir),
            overwrite_if_exists=overwrite,
            default_config=True,
        )
    except OutputDirExistsException as exc:
        raise TemplateError(f"{Path(output_dir) / name} already exists (use --force to overwrite)") from exc
    except FailedHookException as exc:
        raise TemplateError("the template rejected the answers (its messages are above)") from exc
    except (CookiecutterException, ValueError) as exc:
        raise TemplateError(str(exc)) from exc
    return Path(created)


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "new",
        help="start a model project from the pymodel template",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("name", help="model name: the Triton model, its Python module and its folder")
    command.add_argument("-o", "--output-dir", default=".", help="where to create the folder (default: .)")
    command.add_argument("--class-name", help="Python class name (default: NAME in CamelCase)")
    command.add_argument("--description", help="one-line description")
    command.add_argument("--input-name", help="input tensor name (default: INPUT)")
    command.add_argument("--output-name", help="output tensor name (default: OUTPUT)")
    command.add_argument(
        "--dtype", choices=DTYPES, help="data type of the input and the output (default: FP32)"
    )
    command.add_argument(
        "--dims", help="dims without the batch axis, comma-separated, -1 = variable (default: 4)"
    )
    command.add_argument(
        "--batching", action=argparse.BooleanOptionalAction, help="batch requests together (default: yes)"
    )
    command.add_argument(
        "--torch",
        dest="use_torch",
        action=argparse.BooleanOptionalAction,
        help="compute with torch (default: no)",
    )
    command.add_argument(
        "--decoupled",
        action=argparse.BooleanOptionalAction,
        help="several responses per request (default: no)",
    )
    command.add_argument(
        "--no-input",
        action="store_true",
        help="ask nothing: options and defaults answer everything (the default without a terminal)",
    )
    command.add_argument("--force", action="store_true", help="write into an existing project folder")
    command.add_argument("--template", help="another cookiecutter template folder (default: pymodel)")
    command.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # cookiecutter logs a traceback when the answer check fails; the check's own messages say it all.
    cookiecutter_log = logging.getLogger("cookiecutter")
    cookiecutter_log.addHandler(logging.NullHandler())
    cookiecutter_log.propagate = False
    answers: Mapping[str, Any] = {key: getattr(args, key) for key in ANSWER_KEYS}
    no_input = args.no_input or not sys.stdin.isatty()
    try:
        project = new_project(
            args.name,
            args.output_dir,
            no_input=no_input,
            overwrite=args.force,
            template=args.template,
            **answers,
        )
    except TemplateError as exc:
        print(f"pbkit new: error: {exc}", file=sys.stderr)
        return 1
    print(f"created {project}")
    print(f"next: cd {project} && python -m pytest && pbkit build . -o model_repository")
    return 0
