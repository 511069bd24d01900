"""Every Dockerfile passes hadolint, runs as a non-root user on a pinned base, and installs extras that exist."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from services.common.registry import QUEUES
from tests.deploy.deploy_files import DOCKERFILES, ROOT, base_images, compose_build_args, installed_extras, instructions

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
SLIM_IMAGES = {"api", "crawler", "filter"}

by_name = pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)


def extra_closure(extra: str) -> set[str]:
    """Requirement strings of an extra, following `ghibli-lora[...]` self-references."""
    requirements: set[str] = set()
    for requirement in EXTRAS[extra]:
        if nested := re.fullmatch(r"ghibli-lora\[([^\]]+)\]", requirement):
            for name in nested.group(1).split(","):
                requirements |= extra_closure(name)
        else:
            requirements.add(requirement)
    return requirements


def test_every_service_image_has_a_dockerfile() -> None:
    assert {path.stem for path in DOCKERFILES} == {"api", "crawler", "filter", "captioner", "trainer", "inference"}


@by_name
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@by_name
def test_each_ignored_rule_says_why(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            reason = lines[number - 1] if number else ""
            assert reason.startswith("# ") and "hadolint" not in reason, (
                f"{dockerfile.name}:{number + 1} needs a reason"
            )


@by_name
def test_base_images_are_pinned_and_the_final_user_is_not_root(dockerfile: Path) -> None:
    for image in base_images(dockerfile):
        tag = image.rpartition(":")[2]
        assert re.search(r"\d+\.\d+", tag), f"{dockerfile.name}: {image} is not pinned to a version"
    steps = instructions(dockerfile)
    final_stage = steps[max(index for index, step in enumerate(steps) if step["instruction"] == "FROM") :]
    users = [step["value"] for step in final_stage if step["instruction"] == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{dockerfile.name} runs as root"


@by_name
def test_installed_extras_exist(dockerfile: Path, compose_config: dict[str, Any]) -> None:
    for build_args in [{}, *compose_build_args(compose_config, dockerfile)]:
        extras = installed_extras(dockerfile, build_args)
        assert extras, f"{dockerfile.name} installs no extra"
        assert extras <= set(EXTRAS), f"{dockerfile.name} installs unknown extras {extras - set(EXTRAS)}"


@pytest.mark.parametrize("dockerfile", [path for path in DOCKERFILES if path.stem in SLIM_IMAGES], ids=lambda p: p.stem)
def test_slim_images_pull_no_torch(dockerfile: Path, compose_config: dict[str, Any]) -> None:
    for build_args in [{}, *compose_build_args(compose_config, dockerfile)]:
        for extra in installed_extras(dockerfile, build_args):
            assert not any(requirement.startswith("torch") for requirement in extra_closure(extra)), extra
    bases = base_images(dockerfile)
    assert all(base.startswith("python:") for base in bases), bases


@pytest.mark.parametrize(
    "dockerfile", [path for path in DOCKERFILES if path.stem not in SLIM_IMAGES], ids=lambda p: p.stem
)
def test_gpu_images_use_a_cuda_base(dockerfile: Path) -> None:
    bases = base_images(dockerfile)
    assert all(base.startswith("nvidia/cuda:") for base in bases), bases


@by_name
def test_default_worker_command_serves_a_known_queue(dockerfile: Path) -> None:
    command = DockerfileParser(str(dockerfile)).cmd or ""
    if '"worker"' in command:
        queue = re.search(r'"-Q", "(\w+)"', command)
        assert queue and queue.group(1) in QUEUES, command


@by_name
def test_copied_paths_exist_and_pass_dockerignore(dockerfile: Path) -> None:
    allowed = ("pyproject.toml", "README.md", "services", "deploy")
    for step in instructions(dockerfile):
        if step["instruction"] == "COPY" and "--from=" not in step["value"]:
            for source in step["value"].split()[:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
                assert source.split("/")[0] in allowed, f"{source} is excluded by .dockerignore"


def test_constraints_pin_what_the_extras_require() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    for extra in ("api", "crawler", "filter", "captioner", "trainer", "inference", "flower"):
        for text in extra_closure(extra):
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"deploy/constraints.txt lacks {name}: run deploy/freeze_constraints.py"
            assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} breaks {text}"


@by_name
def test_builds_offline_or_behind_a_mirror(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    # A `# syntax=` line makes BuildKit pull a frontend image before anything else: offline builds fail there.
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE), f"{dockerfile.name} names a frontend image"
    steps = instructions(dockerfile)
    first_from = next(index for index, step in enumerate(steps) if step["instruction"] == "FROM")
    global_args = {step["value"].partition("=")[0] for step in steps[:first_from] if step["instruction"] == "ARG"}
    for step in steps:
        if step["instruction"] == "FROM":
            image = step["value"].split()[0]
            assert re.fullmatch(r"\$\{\w+\}", image) and image[2:-1] in global_args, f"{dockerfile.name}: FROM {image}"


@pytest.mark.parametrize(
    "dockerfile", [path for path in DOCKERFILES if path.stem not in SLIM_IMAGES], ids=lambda p: p.stem
)
def test_gpu_images_take_another_torch_index_and_default_to_pypi(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    assert any(step["value"] == 'TORCH_INDEX_URL=""' for step in steps if step["instruction"] == "ARG")
    torch_install = next(
        step["value"] for step in steps if step["instruction"] == "RUN" and step["value"].endswith(" torch")
    )
    assert '${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}' in torch_install
