"""Synthetic long SFT data of recipes (the quick start's too): passkey and key-value QA chats at mixed lengths.

The records are ordinary chat records (``messages``), so they go through ``longctx pack`` like a
user's own data; they are the conversations the shipped model was pretrained on, only longer. Mixed lengths (half the original context up to the new one) matter: packing long
and short sequences together is what keeps short-context accuracy while the model learns long.
A real model is better taught in real text: ``filler`` (sentences of a long text, e.g. the World
English Bible) replaces the noise haystack, and ``qa_share`` of the records become RULER-style
key-value questions with distractor needles (:func:`eval_longbench.needle.build_sample`'s ``needle`` task).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from eval_longbench.haystack import passkey_sample
from eval_longbench.needle import NeedleConfig, build_sample
from eval_longbench.passkey import chat_ids, chat_overhead, passkey_messages
from longctx.core.io import atomic_write_text

QA_NEEDLES = 4
"""Needles in a QA record: the asked one and three distractors (the benchmark's multi-needle task)."""
QA_ANSWER = "{value}."
"""The assistant's reply to a QA record: the asked value (the question already ends in "... is")."""


def sft_records(tokenizer, n: int, *, min_tokens: int, max_tokens: int, seed: int = 0,
                stream: str = "quickstart-sft", edge_share: float = 0.0, filler: Sequence[str] | None = None,
                qa_share: float = 0.0) -> list[dict]:
    """``n`` passkey conversations whose rendered length lies in ``[min_tokens, max_tokens]``.

    ``stream`` names the random stream (with ``seed``): the recipe draws its long and short records
    from streams of their own, the quick start from ``quickstart-sft``. ``edge_share`` of the needles
    sit exactly at depth 0 or 100 % (half each), the rest uniformly: a uniform depth almost never puts
    the needle at the haystack's edges, where a long-context model fails first (the farthest needle, and
    the one right before the question). ``filler``: haystack sentences (default the noise haystack).
    ``qa_share`` of the records ask for one of :data:`QA_NEEDLES` key-value needles instead of a pass key.
    With the defaults the random stream is the one it always was.
    """
    overhead = chat_overhead(tokenizer)
    qa_overhead = _qa_overhead(tokenizer) if qa_share else 0
    rng = random.Random(f"{stream}:{seed}")
    out = []
    for i in range(n):
        total = rng.randint(min_tokens, max_tokens)
        s = rng.randrange(2**31)
        depth = rng.random()
        if edge_share and rng.random() < edge_share:
            depth = float(rng.random() < 0.5)
        if qa_share and rng.random() < qa_share:
            out.append(_qa_record(tokenizer, total - qa_overhead, depth, s, filler, i, total))
            continue
        prompt, _, key = passkey_sample(tokenizer, total - overhead, depth, s, filler=filler)
        out.append({"messages": passkey_messages(prompt, key), "id": f"passkey-{i}", "tokens": total})
    return out


def _qa_overhead(tokenizer) -> int:
    """Tokens the chat template and a 7-digit reply add around a QA prompt."""
    return len(chat_ids(tokenizer, [{"role": "user", "content": ""},
                                    {"role": "assistant", "content": QA_ANSWER.format(value="0" * 7)}]))


def _qa_record(tokenizer, prompt_tokens: int, depth: float, seed: int, filler, i: int, total: int) -> dict:
    cfg = NeedleConfig(task="needle", lengths=[prompt_tokens], num_needles=QA_NEEDLES)
    sample = build_sample(tokenizer, cfg, prompt_tokens, depth, seed, filler=filler)
    messages = [{"role": "user", "content": sample["prompt"]},
                {"role": "assistant", "content": QA_ANSWER.format(value=sample["answer"])}]
    return {"messages": messages, "id": f"qa-{i}", "tokens": total}


def write_sft_jsonl(path: str | Path, records: list[dict]) -> Path:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return Path(path)
