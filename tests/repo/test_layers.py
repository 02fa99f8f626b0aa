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


def test_imports_sit_at_module_top_unless_their_line_says_why():
    """ruff's PLC0415 (import-outside-toplevel) over the four packages: a function-level import is allowed
    only with ``# noqa: PLC0415 (reason)`` on its line (optional dependency, GPU images without datasets),
    and the CLI dispatcher's by-name import (docs/architecture.md lists each)."""
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "PLC0415", "--output-format",
                          "concise", "longctx", "rope_scaling", "packing", "eval_longbench"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    noqa = subprocess.run(["grep", "-rn", "noqa: PLC0415", "longctx", "rope_scaling", "packing", "eval_longbench",
                           "--include=*.py"], cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    unexplained = [line for line in noqa if "(" not in line.split("PLC0415", 1)[1]]
    assert not unexplained, "\n".join(unexplained)
