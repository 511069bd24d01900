"""Import a container's entry points while only the distributions its image installs can be imported.

Run as a script: `python image_imports.py SPEC_JSON`, where the JSON names the image's extras, the
distributions it installs beside them (`pip install --no-deps ...`), and the entry points to load.
The test venv holds every extra; a meta-path finder placed first refuses any top-level module
whose distributions are all outside the image's closure, exactly as a missing package would,
so a worker that imports what its image lacks fails here instead of in a restart loop.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.metadata
import json
import os
import re
import runpy
import sys
import tempfile
from collections.abc import Sequence
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "ghibli-lora"
# Imported by the interpreter or pip machinery in any venv, whatever the image's extras.
ALWAYS_PRESENT = {"pip", "setuptools", "wheel", "_distutils_hack", "pkg_resources"}


def distribution_closure(roots: Sequence[tuple[str, frozenset[str]]]) -> set[str]:
    """Canonical names of every distribution that installing `roots` (name, extras) pulls in."""
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    pending = [(canonicalize_name(name), extra) for name, extras in roots for extra in ("", *extras)]
    while pending:
        name, extra = pending.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        names.add(name)
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a marker-excluded or optional distribution this venv does not hold
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
                continue
            if requirement.marker is None and extra:
                continue  # an unconditional requirement belongs to the base install, already followed
            target = canonicalize_name(requirement.name)
            pending += [(target, nested) for nested in ("", *requirement.extras)]
    return names


class ImageOnlyFinder(importlib.abc.MetaPathFinder):
    """Refuses top-level modules that only distributions outside the image provide."""

    def __init__(self, allowed_distributions: set[str]) -> None:
        self.owners = {
            module: {canonicalize_name(dist) for dist in dists}
            for module, dists in importlib.metadata.packages_distributions().items()
        }
        self.allowed = allowed_distributions

    def find_spec(self, fullname: str, path: object = None, target: ModuleType | None = None) -> None:
        top_level = fullname.partition(".")[0]
        owners = self.owners.get(top_level)
        if top_level in ALWAYS_PRESENT or top_level in sys.stdlib_module_names or not owners:
            return None  # stdlib, the repository's own packages, or nothing installed: normal lookup
        if owners & self.allowed:
            return None
        raise ModuleNotFoundError(f"No module named {top_level!r} (not installed in this image)", name=top_level)


def load_entry_point(entry: dict[str, str]) -> None:
    kind, target = entry["kind"], entry["target"]
    if kind == "module":
        importlib.import_module(target)
    elif kind == "factory":
        module_name, _, function = target.partition(":")
        getattr(importlib.import_module(module_name), function)()
    elif kind == "script":
        runpy.run_path(target, run_name="image_imports")
    else:
        raise ValueError(f"unknown entry point kind {kind!r}")


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    allowed = distribution_closure(
        [(PROJECT, frozenset(spec["extras"])), *((name, frozenset()) for name in spec["no_deps"])]
    )
    # Modules imported before the finder (by site, pytest's plugins are not here) stay importable; drop the
    # project's own so they import again under the finder.
    for name in [module for module in sys.modules if re.match(r"services(\.|$)", module)]:
        del sys.modules[name]
    sys.meta_path.insert(0, ImageOnlyFinder(allowed))
    os.environ.setdefault("GHIBLI_DATA_DIR", tempfile.mkdtemp(prefix="image-imports-"))
    for entry in spec["entry_points"]:
        try:
            load_entry_point(entry)
        except ImportError as error:
            print(f"{entry['kind']} {entry['target']}: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
