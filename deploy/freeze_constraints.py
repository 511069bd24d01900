"""Write deploy/constraints.txt: the versions installed in this venv (the ones the tests ran with) of
every package the service images install, so an image built later gets the same versions.

Run after changing dependencies: `.venv/bin/python deploy/freeze_constraints.py`.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

PROJECT = "ghibli-lora"
# The extras some image installs; dev and bench tools stay out of the images.
IMAGE_EXTRAS = ("api", "crawler", "filter", "captioner", "trainer", "inference", "flower")
OUTPUT = Path(__file__).with_name("constraints.txt")
# The oldest Python the project supports (pyproject's requires-python): Debian bookworm's is 3.11.2.
OLDEST_PYTHON = "3.11.0"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    """Installed name -> version of `root[extras]` and everything it pulls in, transitively."""
    found: dict[str, str] = {}
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, wanted_extras = pending.pop()
        if (canonical(name), wanted_extras) in seen:
            continue
        seen.add((canonical(name), wanted_extras))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency for another platform or Python
        found[canonical(name)] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            for extra in {"", *wanted_extras}:
                if requirement.marker is None or requirement.marker.evaluate({**default_environment(), "extra": extra}):
                    pending.append((requirement.name, frozenset(requirement.extras)))
                    break
    found.pop(canonical(root), None)
    return found


def python_marker(name: str) -> str:
    """`; python_full_version ...` when the pinned release needs a newer Python than the oldest supported.

    Elsewhere the pin does not apply and pip picks a release that installs there (soupsieve 4.1.3 needs
    3.11.5: without the marker, an image on Debian's Python 3.11.2 cannot be built).
    """
    requires_python = metadata.distribution(name).metadata.get("Requires-Python")
    if not requires_python or SpecifierSet(requires_python).contains(OLDEST_PYTHON):
        return ""
    clauses = " and ".join(
        f'python_full_version {spec.operator} "{spec.version}"' for spec in SpecifierSet(requires_python)
    )
    return f"; {clauses}"


def main() -> int:
    versions = runtime_closure(PROJECT, IMAGE_EXTRAS)
    # A local build tag (torch's "+cpu") names a wheel index, not a version: the GPU images pick their own build.
    lines = [f"{name}=={version.split('+')[0]}{python_marker(name)}" for name, version in sorted(versions.items())]
    header = "# Written by deploy/freeze_constraints.py from the tested venv; every image installs with it.\n"
    OUTPUT.write_text(header + "\n".join(lines) + "\n")
    print(f"{len(lines)} pins written to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
