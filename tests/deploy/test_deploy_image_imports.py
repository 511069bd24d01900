"""Each image's containers start: their entry points import with only what that image installs.

CI's venv holds every extra, so a module that needs another image's package (starlette in a Celery
worker) passed every other test and crashed every worker container on start. Here each image's
commands (compose `command`, the Dockerfile's CMD, the worker healthcheck) are loaded in a
subprocess that can import only the distributions of that image's extras (tests/deploy/image_imports.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

from services.common import registry
from tests.deploy.deploy_files import DOCKERFILES, ROOT, installed_extras, instructions

IMAGE_IMPORTS = Path(__file__).with_name("image_imports.py")
NO_DEPS_INSTALL = re.compile(r"pip install --no-deps ([A-Za-z0-9_.-]+)==")


def entry_points(command: list[str]) -> list[dict[str, str]]:
    """What a container command imports: the Celery app and its queue's handlers, Flower, or an app factory."""
    if command[:1] == ["celery"]:
        points = [{"kind": "module", "target": command[command.index("-A") + 1]}]
        if "worker" in command:
            queue = command[command.index("-Q") + 1]
            for spec in registry.JOB_TYPES.values():
                if spec.queue == queue:
                    points += [
                        {"kind": "module", "target": spec.params.partition(":")[0]},
                        {"kind": "module", "target": spec.handler.partition(":")[0]},
                    ]
            points.append({"kind": "script", "target": str(ROOT / "deploy" / "worker_healthcheck.py")})
        elif "flower" in command:
            points.append({"kind": "module", "target": "flower.command"})
        return points
    if command[:1] == ["uvicorn"]:
        return [{"kind": "factory", "target": command[command.index("--factory") + 1]}]
    raise AssertionError(f"no known entry point in {command}")


def image_cases(compose_config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(service, spec) for every compose service built from a Dockerfile, with that build's extras."""
    cases = []
    for name, service in sorted(compose_config["services"].items()):
        if "build" not in service:
            continue
        dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
        build_args = service["build"].get("args", {})
        command = service.get("command") or json.loads(DockerfileParser(str(dockerfile)).cmd or "[]")
        runs = " ".join(step["value"] for step in instructions(dockerfile) if step["instruction"] == "RUN")
        cases.append(
            (
                name,
                {
                    "extras": sorted(installed_extras(dockerfile, build_args)),
                    "no_deps": NO_DEPS_INSTALL.findall(runs),
                    "entry_points": entry_points(command),
                },
            )
        )
    return cases


def run_restricted(spec: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(IMAGE_IMPORTS), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "GHIBLI_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_every_built_service_is_checked(compose_config: dict[str, Any]) -> None:
    built = {name for name, service in compose_config["services"].items() if "build" in service}
    assert {name for name, _ in image_cases(compose_config)} == built
    dockerfiles_used = {
        Path(service["build"]["context"]) / service["build"]["dockerfile"]
        for service in compose_config["services"].values()
        if "build" in service
    }
    assert dockerfiles_used == set(DOCKERFILES)


def test_each_service_starts_with_only_its_image(compose_config: dict[str, Any], tmp_path: Path) -> None:
    failures = []
    for name, spec in image_cases(compose_config):
        result = run_restricted(spec, tmp_path)
        if result.returncode != 0:
            failures.append(f"{name} (extras {spec['extras']}): {result.stderr.strip().splitlines()[-1:]}")
    assert not failures, "\n".join(failures)


def test_the_check_refuses_what_an_image_lacks(tmp_path: Path) -> None:
    # The guard itself: the crawler image has no FastAPI, so importing the gateway must fail there.
    spec = {"extras": ["crawler"], "no_deps": [], "entry_points": [{"kind": "module", "target": "services.api.app"}]}
    result = run_restricted(spec, tmp_path)
    assert result.returncode == 1
    assert "not installed in this image" in result.stderr
