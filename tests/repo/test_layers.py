"""Imports point down the layers of docs/architecture.md: the contracts in pyproject.toml, checked by
import-linter (a maintained library for exactly this), so a test fails on the first import that points up."""

from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

from support import ROOT


def test_imports_follow_the_layer_contracts(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert status == EXIT_STATUS_SUCCESS, capsys.readouterr().out
