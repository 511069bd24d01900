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
import importlib.util
import json
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from packaging.utils import canonicalize_name

FREEZE_SCRIPT = Path(__file__).parents[2] / "deploy" / "freeze_constraints.py"
# Imported by the interpreter or pip machinery in any venv, whatever the image's extras.
ALWAYS_PRESENT = {"pip", "setuptools", "wheel", "_distutils_hack", "pkg_resources"}


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


def image_distributions(extras: list[str], no_deps: list[str]) -> set[str]:
    """What `pip install ".[extras]"` and `pip install --no-deps ...` put in the image, by the freeze script's rule."""
    module_spec = importlib.util.spec_from_file_location("freeze_constraints", FREEZE_SCRIPT)
    assert module_spec and module_spec.loader
    freeze = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(freeze)
    closure = freeze.runtime_closure(freeze.PROJECT, tuple(extras))
    return {canonicalize_name(name) for name in [freeze.PROJECT, *closure, *no_deps]}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    allowed = image_distributions(spec["extras"], spec["no_deps"])
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
