"""Imports point down the layers of docs/architecture.md: the contracts in pyproject.toml, checked by
import-linter (a maintained library for exactly this), so a test fails on the first import that points up."""

import subprocess
import sys

from support import ROOT


def test_imports_follow_the_layer_contracts():
    # A separate process: import-linter reconfigures logging, which changed transformers' warnings in later tests.
    run = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                          "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
