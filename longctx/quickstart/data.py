"""Synthetic long SFT data for the quick start: passkey conversations at mixed lengths (JSONL).

The records are ordinary chat records (``messages``), so they go through ``longctx pack`` like a
user's own data; they are the conversations the shipped model was pretrained on, only longer. Mixed lengths (half the original context up to the new one) matter: packing long
and short sequences together is what keeps short-context accuracy while the model learns long.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from eval_longbench.haystack import passkey_sample
from longctx.io import atomic_write_text
from longctx.organism.data import chat_overhead, passkey_messages


def sft_records(tokenizer, n: int, *, min_tokens: int, max_tokens: int, seed: int = 0,
                stream: str = "quickstart-sft", edge_share: float = 0.0) -> list[dict]:
    """``n`` passkey conversations whose rendered length lies in ``[min_tokens, max_tokens]``.

    ``stream`` names the random stream (with ``seed``): the recipe draws its long and short records
    from streams of their own, the quick start from ``quickstart-sft``. ``edge_share`` of the needles
    sit exactly at depth 0 or 100 % (half each), the rest uniformly: a uniform depth almost never puts
    the needle at the haystack's edges, where a long-context model fails first (the farthest needle, and
    the one right before the question). With 0 the random stream is the one it always was.
    """
    overhead = chat_overhead(tokenizer)
    rng = random.Random(f"{stream}:{seed}")
    out = []
    for i in range(n):
        length = rng.randint(min_tokens, max_tokens) - overhead
        s = rng.randrange(2**31)
        depth = rng.random()
        if edge_share and rng.random() < edge_share:
            depth = float(rng.random() < 0.5)
        prompt, _, key = passkey_sample(tokenizer, length, depth, s)
        out.append({"messages": passkey_messages(prompt, key), "id": f"passkey-{i}", "tokens": length + overhead})
    return out


def write_sft_jsonl(path: str | Path, records: list[dict]) -> Path:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return Path(path)
