"""The `longctx` command: one table of subcommands, each resolvable, each with --help."""

import pytest

from longctx.cli import SUBCOMMANDS, main, resolve


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_unknown_subcommand_exits_2_with_usage(capsys):
    assert main(["nope"]) == 2
    assert "unknown subcommand" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_resolves_and_has_help(name, capsys):
    fn = resolve(name)
    with pytest.raises(SystemExit) as exc:
        fn(["--help"])
    assert exc.value.code == 0
    assert f"longctx {name}" in capsys.readouterr().out
