"""One evaluation run over its models: the sequence every ``longctx`` evaluation shares.

1. ``OUT/results.json`` is opened with the run's settings as its meta: resumed when they match,
   refused when they differ, started over with ``overwrite``.
2. Every model name is bound to its content key (weights, or endpoint + served model + tokenizer)
   *before* anything loads, so another checkpoint or server under a known name is refused at once.
3. The models are evaluated one at a time; what one opened is freed before the next one loads.
4. The report (tables, plots, ratings over the stored results) is made once, from every model's result.

Why one function: the five commands used to repeat this sequence each in its own words; now they differ
only in what they pass in (settings, the work on one model, the report), and a new evaluation gets the
resume and content-key rules by calling :func:`run_sweep`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from eval_longbench.model_source import ModelSource, bind_sources
from eval_longbench.results import ResultStore

T = TypeVar("T")
R = TypeVar("R")

RESULTS_FILE = "results.json"


def open_results(out: str | Path, meta: dict, sources: Sequence[ModelSource], *, overwrite: bool = False) -> ResultStore:
    """``out/results.json`` for ``meta`` (steps 1 and 2 above), each model name bound before anything loads."""
    store = ResultStore(Path(out) / RESULTS_FILE, meta, overwrite=overwrite)
    bind_sources(store, sources)
    return store


def run_sweep(out: str | Path, meta: dict, sources: Sequence[ModelSource],
              evaluate: Callable[[ResultStore, ModelSource], T],
              report: Callable[[ResultStore, dict[str, T]], R], *, overwrite: bool = False) -> R:
    """``report(store, {name: evaluate(store, source)})`` over ``out/results.json``.

    ``evaluate`` opens its model only when it has work left (a finished run is re-reported without loading
    anything) and keeps no reference to it in its result: the model is freed, and collected here, before
    the next one loads. ``report`` runs after the last model.
    """
    store = open_results(out, meta, sources, overwrite=overwrite)
    results: dict[str, T] = {}
    for src in sources:
        results[src.name] = evaluate(store, src)
        gc.collect()  # what `evaluate` opened is gone before the next model loads
    return report(store, results)
