"""Pretraining data of the shipped tiny model: passkey tasks in RULER-style noise, written as packs.

Each sequence is one chat turn of exactly ``seq_len`` tokens: the user message is an
:func:`eval_longbench.haystack.passkey_sample` prompt, the assistant answers with the key, all
rendered by the byte tokenizer's chat template (:mod:`eval_longbench.passkey`, so ``longctx needle
--chat`` asks the model the way it was trained, and the recipes' SFT records are the same
conversations at longer lengths). The loss covers the whole sequence
(the model also learns the filler language), with the key's digits weighted ``answer_weight``
times wherever they can be retrieved: in the answer, and in the needle's own repeat of the key
("The pass key is 12345. Remember it. 12345 is ..."). The repeat is a short-range copy, so it
teaches the copying circuit first; the answer then needs the same circuit at long range. (Boosting
the answer alone left the digit loss at ln 10 for 2,500 steps in a run of this recipe.)
Weights are normalised so each sequence sums to 1, as in packing's LongAlign convention, so the
trainer's ``weighted`` loss (divide by the number of sequences) is a per-sequence mean.

Rows are a pure function of (seed, index): ``pretrain_sequence(tok, 512, seed, i)`` is the same on
every machine, and training/check seeds never overlap (see :func:`sample_seed`). Written directly as
packs (packing's writer and manifest), not through ``longctx pack``: the weights are not packing's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eval_longbench.haystack import passkey_sample
from eval_longbench.passkey import answer_offset, chat_ids, chat_overhead, passkey_messages
from longctx.core.errors import LongctxError
from longctx.core.labels import IGNORE_INDEX
from longctx.core.tokenizer import byte_tokenizer
from packing.writer import make_manifest, pack_row, tokenizer_info, write_packs

FORMAT_NOTE = ("organism pretraining: one passkey sequence per row, labels = input_ids (whole-sequence LM), "
               "loss_weights = 1 per target token and answer_weight on the answer digits, normalised to sum 1 per row")


def sample_seed(seed: int, index: int | str) -> int:
    """Seed of sequence ``index`` of a data set with base ``seed`` (namespaced away from eval seeds)."""
    return random.Random(f"organism-pretrain:{seed}:{index}").randrange(2**31)


def key_positions(ids: np.ndarray, key_ids: list[int]) -> list[int]:
    """Start indices of every occurrence of the key's tokens in ``ids`` (the needle has it twice)."""
    n = len(key_ids)
    return [i for i in range(len(ids) - n + 1) if ids[i] == key_ids[0] and ids[i:i + n].tolist() == key_ids]


def pretrain_sequence(tokenizer, seq_len: int, seed: int, index: int | str, *, digits: int = 5,
                      answer_weight: float = 5.0) -> dict:
    """One training sequence: the chat-rendered passkey conversation, exactly ``seq_len`` tokens, with weights.

    Returns ``input_ids``, ``labels``, ``loss_weights`` (the sequence as :func:`packing.writer.pack_row`
    takes it) and the ``answer`` key."""
    s = sample_seed(seed, index)
    depth = random.Random(s).random()
    prompt_len = seq_len - chat_overhead(tokenizer, digits)
    prompt, info, key = passkey_sample(tokenizer, prompt_len, depth, s, digits=digits)
    ids = chat_ids(tokenizer, passkey_messages(prompt, key))
    if len(ids) != seq_len:
        raise LongctxError(f"organism data: sequence {index} (seed {seed}) has {len(ids)} tokens, expected {seq_len}; "
                           "the tokenizer must give one token per byte")
    ids = np.asarray(ids, dtype=np.int32)
    start = answer_offset(tokenizer, prompt)
    if tokenizer.decode(ids[start:start + digits].tolist()) != key:
        raise LongctxError(f"organism data: sequence {index}: answer not found at token {start}")
    weights = np.ones(seq_len, dtype=np.float64)
    weights[0] = 0.0  # the first token is never a target (labels are shifted by the trainer)
    for at in key_positions(ids, tokenizer(key, add_special_tokens=False)["input_ids"])[1:]:
        weights[at:at + digits] = answer_weight  # the needle's repeat of the key, then the answer
    weights /= weights.sum()
    labels = ids.copy()
    labels[0] = IGNORE_INDEX
    return {"input_ids": ids, "labels": labels, "loss_weights": weights.astype(np.float32), "answer": key}


def iter_sequences(tokenizer, n: int, seq_len: int, seed: int, **kw) -> Iterator[dict]:
    for i in range(n):
        yield pretrain_sequence(tokenizer, seq_len, seed, i, **kw)


def _write(out: str | Path, rows: Iterator[dict], n: int, pack_length: int, tokenizer, *, config: dict,
           conventions: str, progress: bool, overwrite: bool, desc: str, unit: str, **extra) -> Path:
    """Write ``n`` rows with packing's writer; ``config`` names this module as the source, ``extra`` adds manifest keys."""
    manifest = make_manifest("pack", pack_length, n, tokenizer_info(tokenizer, "longctx.core.tokenizer.byte_tokenizer"),
                             config=config, **extra, conventions={"loss_weights": conventions})
    return write_packs(out, rows, manifest, overwrite=overwrite, progress=progress, desc=desc, unit=unit)


def write_pretrain_packs(out: str | Path, n: int, *, seq_len: int = 512, seed: int = 0, answer_weight: float = 5.0,
                         tokenizer=None, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``n`` pretraining rows (one sequence of ``seq_len`` tokens each) as a pack directory at ``out``."""
    if n < 1:
        raise LongctxError(f"organism data: n must be >= 1, got {n}")
    tokenizer = tokenizer if tokenizer is not None else byte_tokenizer()
    rows = (pack_row([s], seq_len, tokenizer.pad_token_id)
            for s in iter_sequences(tokenizer, n, seq_len, seed, answer_weight=answer_weight))
    return _write(out, rows, n, seq_len, tokenizer,
                  config={"source": "longctx.recipe.pretrain_data", "seed": seed, "answer_weight": answer_weight, "digits": 5},
                  conventions=FORMAT_NOTE, progress=progress, overwrite=overwrite, desc="organism data", unit="seq",
                  counts={"sequences": n, "packs": n, "tokens_packed": n * seq_len})


def mixed_pack(tokenizer, pack_len: int, min_len: int, seed: int, pack_index: int, *, answer_weight: float = 5.0) -> dict:
    """One pack of ``pack_len`` tokens filled exactly with passkey conversations of random lengths >= ``min_len``.

    Phase 2 of the recipe: after phase 1 (every conversation exactly ``pack_len`` tokens, answer
    always at the same positions) the model retrieves at its full window but less well at shorter
    lengths; mixed lengths packed together (LongAlign packing, positions restarting per sequence)
    teach every length. Each sequence's weights sum to 1, as in phase 1.
    """
    rng = random.Random(f"organism-mixed:{seed}:{pack_index}")
    parts, left = [], pack_len
    while left >= min_len:
        n = rng.randint(min_len, pack_len)  # uniform lengths; one that does not fit ends the pack
        if n > left:
            break
        parts.append(pretrain_sequence(tokenizer, n, seed, f"mixed:{pack_index}:{len(parts)}", answer_weight=answer_weight))
        left -= n
    return pack_row(parts, pack_len, tokenizer.pad_token_id)  # the rest is padding, packing's way


def write_mixed_packs(out: str | Path, n: int, *, pack_len: int = 512, min_len: int = 224, seed: int = 0,
                      answer_weight: float = 5.0, tokenizer=None, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``n`` :func:`mixed_pack` rows as a pack directory (packing's format + manifest)."""
    if n < 1 or not 0 < min_len <= pack_len:
        raise LongctxError(f"organism data: need n >= 1 and 0 < min_len <= pack_len, got {n}, {min_len}, {pack_len}")
    tokenizer = tokenizer if tokenizer is not None else byte_tokenizer()
    rows = (mixed_pack(tokenizer, pack_len, min_len, seed, i, answer_weight=answer_weight) for i in range(n))
    return _write(out, rows, n, pack_len, tokenizer,
                  config={"source": "longctx.recipe.pretrain_data.mixed_pack", "seed": seed, "min_len": min_len,
                          "answer_weight": answer_weight, "digits": 5},
                  conventions=FORMAT_NOTE + "; several sequences per pack, position_ids restart at 0",
                  progress=progress, overwrite=overwrite, desc="organism mixed data", unit="pack")
