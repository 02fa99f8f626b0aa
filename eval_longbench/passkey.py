"""The passkey task as a chat: the conversation, its token overhead, and accuracy per prompt length.

One home for the chat form of :func:`eval_longbench.haystack.passkey_sample`: the evaluation asks it
(``longctx needle --task passkey --chat``, recipes, the quick start, ``longctx organism check``) and
the synthetic training data answers it (the shipped model's pretraining rows and the recipes' SFT
records are these conversations), so a model is asked exactly the way it was taught.

:func:`passkey_cells` is a thin layer over :mod:`eval_longbench.needle`: the same prompts, greedy
generation and exact-match scoring, one (length, depth) cell at a time into a resumable results
file; :func:`per_length` pools the cells of all depths at each length.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from eval_longbench.models import hf_generate_fn, load_model
from eval_longbench.needle import NeedleConfig, depth_grid, run_needle
from eval_longbench.results import ResultStore

ANSWER = "The pass key is {key}."
"""The assistant's reply. It repeats the needle's own words before the key, so retrieval is an
n-gram copy ("...pass key is" -> the digits that followed it in the needle), the easiest form of
the task for a 2-layer model (a bare-key reply right after the chat header is harder to match)."""

MAX_NEW_TOKENS = 24
"""Greedy tokens generated per prompt: "The pass key is 12345." is 22 tokens of the byte tokenizer."""


def passkey_messages(prompt: str, key: str) -> list[dict]:
    """The conversation: the passkey prompt from the user, the key in a fixed reply."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": ANSWER.format(key=key)}]


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a whole conversation as the chat template renders it (what packing tokenizes)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def chat_overhead(tokenizer, digits: int = 5) -> int:
    """Tokens the chat template adds around a prompt and a ``digits``-digit answer: a prompt of
    ``window - chat_overhead`` tokens fills ``window`` exactly with the template and the reply."""
    return len(chat_ids(tokenizer, passkey_messages("", "0" * digits)))


def answer_offset(tokenizer, prompt: str) -> int:
    """Token index of the key's first digit in the rendered conversation (chat header + reply prefix)."""
    head = tokenizer.apply_chat_template(passkey_messages(prompt, "")[:1], tokenize=False, add_generation_prompt=True)
    return len(tokenizer(head + ANSWER.split("{key}")[0], add_special_tokens=False)["input_ids"])


def per_length(cells: Sequence[dict]) -> dict[int, dict]:
    """``{length: {"accuracy", "n"}}`` pooling every sample of every depth at that length."""
    out: dict[int, dict] = {}
    for c in cells:
        row = out.setdefault(int(c["length"]), {"hits": 0.0, "n": 0})
        row["hits"] += sum(s["score"] for s in c["samples"])
        row["n"] += len(c["samples"])
    return {L: {"accuracy": r["hits"] / r["n"], "n": r["n"]} for L, r in sorted(out.items())}


def passkey_cells(model_dir: str | Path, lengths: Sequence[int], *, samples_per_cell: int = 4, depths: int = 5,
                  seed: int = 0, results: str | Path | None = None, name: str | None = None,
                  progress: bool = True, model=None, tokenizer=None,
                  max_new_tokens: int = MAX_NEW_TOKENS, model_id: str | None = None) -> list[dict]:
    """Run the chat passkey grid (lengths x ``depths`` evenly spaced depths x ``samples_per_cell``).

    ``results``: a results.json to fill incrementally (resumable); a temporary file when ``None``.
    ``model_id``: the model's content fingerprint, bound to ``name`` in ``results`` (see :func:`run_needle`).
    """
    cfg = NeedleConfig(task="passkey", lengths=[int(L) for L in lengths], depths=depth_grid(depths),
                       samples=samples_per_cell, seed=seed, max_new_tokens=max_new_tokens)
    if model is None:
        model, tokenizer = load_model(model_dir)
    name = name or Path(model_dir).name
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(results) if results else Path(tmp) / "results.json", {**cfg.meta(), "chat": True})
        return run_needle(hf_generate_fn(model, tokenizer, chat=True), tokenizer, cfg, store, model_name=name,
                          progress=progress, model_id=model_id)


def passkey_accuracy(model_dir: str | Path, lengths: Sequence[int], **kw) -> dict[int, dict]:
    """Per-length passkey exact-match accuracy of ``model_dir`` (see :func:`passkey_cells`)."""
    return per_length(passkey_cells(model_dir, lengths, **kw))


def format_accuracy(acc: dict[int, dict], context: int | None = None) -> str:
    """A markdown table: length, multiple of the original context, accuracy, n."""
    lines = ["| length | × context | passkey accuracy | n |", "|---:|---:|---:|---:|"]
    for L, r in acc.items():
        mult = f"{L / context:g}×" if context else ""
        lines.append(f"| {L} | {mult} | {r['accuracy']:.2f} | {r['n']} |")
    return "\n".join(lines)
