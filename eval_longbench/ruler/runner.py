"""Run RULER tasks against a ``generate`` callable, store per-sample records, summarise, find effective length.

Records are keyed ``model|task@confighash|length|sample`` in a :class:`ResultStore` whose models are bound
to their content fingerprints, so a rerun into the same directory resumes (no generation for a stored
sample) and never reuses results of another checkpoint, another task definition or another haystack.
A task whose shortest prompt exceeds a length gets a record with ``score: null`` and no generation:
the table shows ``n/a`` there and the length's average is over the tasks that fit.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from eval_longbench.haystack import check_filler
from eval_longbench.models import GenerateFn
from eval_longbench.results import ResultStore
from eval_longbench.ruler.base import DoesNotFit, GenContext, RulerTask
from eval_longbench.ruler.texts import HAYSTACK_HINT, Haystack, default_haystack
from longctx.core.console import stderr_line
from longctx.core.errors import LongctxError

RULER_THRESHOLD = 85.6
"""RULER's threshold: Llama-2-7B's average at 4K, the score a model must keep to call a length effective."""


@dataclass
class RulerConfig:
    """What one run measures. Tasks and lengths are not in :meth:`meta`: a rerun may add either."""

    tasks: list[RulerTask]
    lengths: list[int] = field(default_factory=lambda: [4096, 8192, 16384])
    samples: int = 5
    seed: int = 0
    max_new_tokens: int | None = None
    """Override every task's answer reserve (RULER's ``tokens_to_generate``: 128 NIAH, 30 VT, 120 CWE, 50 FWE, 32 QA)."""

    def __post_init__(self):
        if not self.tasks:
            raise LongctxError("--tasks: empty")
        if not self.lengths or any(n < 1 for n in self.lengths):
            raise LongctxError(f"--lengths: need positive integers, got {self.lengths}")
        if self.samples < 1:
            raise LongctxError(f"--samples: must be at least 1, got {self.samples}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise LongctxError(f"--max-new-tokens: must be at least 1, got {self.max_new_tokens}")

    def meta(self) -> dict:
        return {"seed": self.seed, "max_new_tokens": self.max_new_tokens}

    def reserve(self, task: RulerTask) -> int:
        return self.max_new_tokens or task.max_new_tokens


def sample_seed(seed: int, task: str, length: int, i: int) -> int:
    """A stable per-sample seed, independent of which other tasks or lengths run."""
    return zlib.crc32(f"{seed}:{task}:{length}:{i}".encode())


def record_key(model_name: str, task: RulerTask, cfg: RulerConfig, length: int, i: int) -> str:
    return f"{model_name}|{task.name}@{task.config_hash(cfg.max_new_tokens)}|{length}|{i}"


def repeat_warning(haystack: Haystack, task: str, length: int, factor: float) -> str:
    return (f"ruler: warning: the essay haystack ({haystack.source}, {len(haystack.joined.split())} words) is shorter than "
            f"{task} needs at {length} tokens: it repeats {factor:.1f}x there (more at longer lengths), which makes "
            f"retrieval easier than RULER's non-repeating essays; {HAYSTACK_HINT}")


def run_ruler(
    generate: GenerateFn,
    tokenizer,
    cfg: RulerConfig,
    store: ResultStore,
    *,
    model_name: str,
    chat: bool,
    server_template: bool = False,
    essay: Haystack | None = None,
    qa: dict | None = None,
    model_id: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = stderr_line,
) -> list[dict]:
    """Fill every missing (task, length, sample) record of ``model_name`` in ``store``; return all of them.

    ``generate(prompt, max_new_tokens)`` answers one prompt laid out as RULER lays it (see
    :class:`~eval_longbench.ruler.base.Sample`): with ``chat`` and not ``server_template`` the prompt is
    the chat-templated conversation ending in the answer prefix, so ``generate`` must add nothing (a
    checkpoint: :func:`eval_longbench.models.hf_generate_fn` with ``templated=True``); with
    ``server_template`` it applies the template itself (an endpoint) and the prefix ends the user message;
    without ``chat`` it adds the tokenizer's special tokens. ``tokenizer`` is the model's own, for exact
    lengths. ``essay``: the essay haystack (default :func:`~eval_longbench.ruler.texts.default_haystack`);
    when it is shorter than a prompt needs it repeats, and ``log`` gets one warning. ``model_id`` (a
    fingerprint of the weights, or of endpoint + served name) refuses a different model under the same
    ``model_name``.
    """
    if model_id is not None:
        store.bind_model(model_name, model_id)
    if essay is not None:
        check_filler(tokenizer, [essay.joined], "--haystack")
    hay = essay or default_haystack()
    ctx = GenContext(tokenizer, chat=chat, server_template=server_template, essay=hay, qa=dict(qa or {}))
    grid = [(t, L, i) for t in cfg.tasks for L in cfg.lengths for i in range(cfg.samples)]
    todo = [(t, L, i) for t, L, i in grid if record_key(model_name, t, cfg, L, i) not in store]
    warned = False
    for task, L, i in tqdm(todo, desc=f"ruler {model_name}", disable=not progress or not todo):
        reserve = cfg.reserve(task)
        rec = {"model": model_name, "task": task.name, "length": L, "sample": i}
        try:
            s = task.generate(ctx, L, L - reserve, sample_seed(cfg.seed, task.name, L, i))
        except DoesNotFit as e:
            rec.update(score=None, skipped=f"{task.name} @ {L}: {e}")
        else:
            if s.info.get("haystack_repeats", 1) > 1 and not warned:
                log(repeat_warning(hay, task.name, L, s.info["haystack_repeats"]))
                warned = True
            pred = generate(s.prompt, reserve)
            rec.update(score=task.score(pred, s.answers), answers=s.answers, prediction=pred, n_tokens=s.n_tokens,
                       info=s.info)
        store.put(record_key(model_name, task, cfg, L, i), rec)
    return [store.get(record_key(model_name, t, cfg, L, i)) for t, L, i in grid]


def score_table(records: Sequence[dict]) -> dict[str, dict[int, float | None]]:
    """``{task: {length: mean score 0-100, or None where the task does not fit}}`` (RULER's scale)."""
    cells: dict[tuple[str, int], list[float]] = {}
    for r in records:
        cells.setdefault((r["task"], r["length"]), [])
        if r["score"] is not None:
            cells[(r["task"], r["length"])].append(r["score"])
    table: dict[str, dict[int, float | None]] = {}
    for (task, L), scores in cells.items():
        table.setdefault(task, {})[L] = 100 * sum(scores) / len(scores) if scores else None
    return table


def length_averages(table: dict[str, dict[int, float | None]]) -> dict[int, float | None]:
    """Per length, the mean over the tasks that fit there (``None`` when none does)."""
    lengths = sorted({L for row in table.values() for L in row})
    out = {}
    for L in lengths:
        vals = [row[L] for row in table.values() if row.get(L) is not None]
        out[L] = sum(vals) / len(vals) if vals else None
    return out


def effective_length(averages: dict[int, float | None], threshold: float) -> int | None:
    """RULER's effective length: the longest length whose average, and every shorter length's, is at
    least ``threshold``; ``None`` when already the shortest falls below (or has no score)."""
    best = None
    for L in sorted(averages):
        avg = averages[L]
        if avg is None or avg < threshold:
            break
        best = L
    return best


MAX_LENGTH = 2**24
"""The longest length ruler builds (16M tokens): past it, building the prompts alone exhausts memory."""
WINDOW_FACTOR = 32
"""Lengths up to this many times the model's trained window are measured (an extension's factor);
beyond, the model cannot have been extended that far and the prompts only cost memory."""


def check_lengths(lengths: Sequence[int], window: int | None, threshold: float | None, name: str) -> None:
    """Before anything is generated: every length can be built and run by ``name`` (whose trained
    window is ``window``), and ``--threshold base`` finds that window among the lengths."""
    for length in lengths:
        if length > MAX_LENGTH:
            raise LongctxError(f"--lengths: {length} is above the {MAX_LENGTH} tokens ruler builds")
        if window is not None and length > WINDOW_FACTOR * window:
            raise LongctxError(f"--lengths: {length} is over {WINDOW_FACTOR} x the trained window of {name} "
                               f"({window}, max_position_embeddings): at most {WINDOW_FACTOR * window}")
    if threshold is None:
        check_base_window(window, lengths)


def check_base_window(window: int | None, lengths) -> None:
    """``--threshold base`` needs the model's trained window, measured: one of ``lengths``."""
    if window is None:
        raise LongctxError("--threshold base: this model's trained window is unknown (no max_position_embeddings in "
                           "its config.json); give a number instead")
    if window not in lengths:
        have = ", ".join(str(L) for L in sorted(lengths))
        raise LongctxError(f"--threshold base: the model's window {window} must be one of --lengths (have {have})")


def base_threshold(averages: dict[int, float | None], window: int) -> float:
    """``--threshold base``: the model's own average at its trained window (which must be a measured length)."""
    check_base_window(window, averages)
    if averages[window] is None:
        raise LongctxError(f"--threshold base: no task fits the model's window {window}; give a number instead")
    return averages[window]


def summarize(records: Sequence[dict], threshold: float | None, window: int | None = None) -> dict:
    """Table, averages, threshold used and effective length of one model's records."""
    table = score_table(records)
    avgs = length_averages(table)
    thr = base_threshold(avgs, window) if threshold is None else threshold
    return {"table": table, "average": avgs, "threshold": thr, "window": window,
            "effective_length": effective_length(avgs, thr), "samples": len(records)}


def _cell(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def markdown_table(name: str, summary: dict) -> str:
    """One model's task x length table (scores 0-100), its average row and effective length."""
    lengths = sorted(summary["average"])
    head = "| task | " + " | ".join(str(L) for L in lengths) + " |\n|---|" + "---:|" * len(lengths) + "\n"
    rows = "".join(f"| {t} | " + " | ".join(_cell(row.get(L)) for L in lengths) + " |\n"
                   for t, row in summary["table"].items())
    avg = "| **average** | " + " | ".join(_cell(summary["average"][L]) for L in lengths) + " |\n"
    eff = summary["effective_length"]
    return (f"### {name}\n\n{head}{rows}{avg}\neffective length: {eff if eff is not None else 'none'} "
            f"(threshold {summary['threshold']:.1f})\n")


def comparison_table(summaries: dict[str, dict]) -> str:
    """Models side by side: the average per length and the effective length of each."""
    lengths = sorted({L for s in summaries.values() for L in s["average"]})
    head = "| model | " + " | ".join(str(L) for L in lengths) + " | effective length | threshold |\n"
    head += "|---|" + "---:|" * (len(lengths) + 2) + "\n"
    rows = "".join(f"| {n} | " + " | ".join(_cell(s["average"].get(L)) for L in lengths)
                   + f" | {s['effective_length'] if s['effective_length'] is not None else 'none'} | {s['threshold']:.1f} |\n"
                   for n, s in summaries.items())
    return head + rows
