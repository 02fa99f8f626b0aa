"""A module dropped into one of our packages for one test, as a contributor's new file would be.

The "files to touch" tests (a new eval command, a new RULER task) write the new module's source into a
temporary folder that joins the package's ``__path__``: the package then imports it by its dotted name,
exactly as if the file sat in the package's own folder, and the checkout is never written to.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType


@contextlib.contextmanager
def module_in_package(package: ModuleType, name: str, source: str, folder: Path) -> Iterator[ModuleType]:
    """``package.<name>`` from ``source``, imported; gone again (file, path entry, sys.modules) after the block."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    dotted = f"{package.__name__}.{name}"
    before = list(package.__path__)
    package.__path__.append(str(folder))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(dotted)
    finally:
        package.__path__[:] = before
        sys.modules.pop(dotted, None)
        if name in vars(package):
            delattr(package, name)
