"""Load a script that is not a package module (benchmarks/*.py, scripts/*.py) so tests can call its functions."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from support import ROOT


def load_script(relpath: str, name: str) -> ModuleType:
    """``ROOT/relpath`` imported as module ``name`` (registered in ``sys.modules``: dataclasses and pickling
    look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
