"""One model's RULER evaluation from start to summary, and the report files of a run.

The command (``longctx ruler``, in :mod:`longctx.cli.ruler`) only parses flags; this module does the
rest, so any model that yields a ``generate(prompt, max_new_tokens) -> str`` callable and its tokenizer
(a local checkpoint, a server) is evaluated the same way: see :func:`evaluate_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eval_longbench.plots import plot_task_heatmaps
from eval_longbench.results import ResultStore
from eval_longbench.ruler.runner import RulerConfig, comparison_table, markdown_table, record_key, run_ruler, summarize
from eval_longbench.ruler.texts import Haystack
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from eval_longbench.model_source import ModelUnderTest


def use_chat(mode: str, tokenizer, where: str) -> bool:
    """``--chat auto|on|off`` for this tokenizer: auto means "when it has a chat template"."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "on" and not has:
        raise LongctxError(f"--chat on: {where}: the tokenizer has no chat template")
    return has if mode == "auto" else mode == "on"


def parse_threshold(text: str) -> float | None:
    """``85.6`` -> 85.6; ``base`` -> ``None`` (each model's own average at its trained window)."""
    if text.strip().lower() == "base":
        return None
    try:
        value = float(text)
    except ValueError:
        raise LongctxError(f"--threshold: {text!r} is neither a score (0-100) nor 'base'") from None
    if not 0 <= value <= 100:
        raise LongctxError(f"--threshold: {value} is outside 0-100")
    return value


def evaluate_model(store: ResultStore, cfg: RulerConfig, name: str, model_id: str, open_model: Callable[[], tuple[ModelUnderTest, bool]],
                   *, threshold: float | None, window: int | None, essay: Haystack | None = None,
                   qa: dict | None = None) -> dict:
    """Run (or resume) every task x length x sample of one model and return its :func:`summarize` dict.

    ``open_model()`` returns the opened model and whether its prompts go through the chat template (for an
    endpoint, the server applies it: the answer prefix then ends the user message).

    ``model_id`` (weights fingerprint, or endpoint + served name) is bound in ``store`` first, so another
    model under ``name`` is refused before anything loads; ``open_model()`` is called only when some
    sample is missing, so a finished run is re-reported without loading the model.
    """
    store.bind_model(name, model_id)
    keys = [record_key(name, t, cfg, L, i) for t in cfg.tasks for L in cfg.lengths for i in range(cfg.samples)]
    if all(k in store for k in keys):
        print(f"{name}: all {len(keys)} samples already in {store.path}; nothing to generate")
        records = [store.get(k) for k in keys]
    else:
        m, chat = open_model()
        records = run_ruler(m.generate, m.tokenizer, cfg, store, model_name=name, chat=chat,
                            server_template=m.source.is_endpoint, essay=essay, qa=qa)
    return summarize(records, threshold, window)


def write_reports(summaries: dict[str, dict], out: str | Path, threshold_text: str) -> list[Path]:
    """``table.md`` (per-model tables, then the comparison when several), ``summary.json``, ``heatmap.png``."""
    out = Path(out)
    text = "\n".join(markdown_table(n, s) for n, s in summaries.items())
    if len(summaries) > 1:
        text += "\n### comparison (average per length)\n\n" + comparison_table(summaries)
    atomic_write_text(out / "table.md", text)
    atomic_write_json(out / "summary.json", {"threshold": threshold_text, "models": summaries})
    return [out / "table.md", out / "summary.json", plot_task_heatmaps(summaries, out / "heatmap.png")]
