"""Pretraining data of the shipped tiny model: passkey tasks in RULER-style noise, as packs.

Each sequence is one chat turn of exactly ``seq_len`` tokens: the user message is an
:func:`eval_longbench.haystack.passkey_sample` prompt, the assistant answers with the key, all
rendered by the byte tokenizer's chat template (so ``longctx needle --chat`` asks the model the way
it was trained, and the quick start's SFT records are the same conversations at longer lengths). The loss covers the whole sequence
(the model also learns the filler language), with the key's digits weighted ``answer_weight``
times wherever they can be retrieved: in the answer, and in the needle's own repeat of the key
("The pass key is 12345. Remember it. 12345 is ..."). The repeat is a short-range copy, so it
teaches the copying circuit first; the answer then needs the same circuit at long range. (Boosting
the answer alone left the digit loss at ln 10 for 2,500 steps in a run of this recipe.)
Weights are normalised so each sequence sums to 1, as in packing's LongAlign convention, so the
trainer's ``weighted`` loss (divide by the number of sequences) is a per-sequence mean.

Rows are a pure function of (seed, index): ``pretrain_sequence(tok, 512, seed, i)`` is the same on
every machine, and training/check seeds never overlap (see :func:`sample_seed`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eval_longbench.haystack import passkey_sample
from longctx.errors import LongctxError
from longctx.io import atomic_dir

FORMAT_NOTE = ("organism pretraining: one passkey sequence per row, labels = input_ids (whole-sequence LM), "
               "loss_weights = 1 per target token and answer_weight on the answer digits, normalised to sum 1 per row")


def sample_seed(seed: int, index: int | str) -> int:
    """Seed of sequence ``index`` of a data set with base ``seed`` (namespaced away from eval seeds)."""
    return random.Random(f"organism-pretrain:{seed}:{index}").randrange(2**31)


ANSWER = "The pass key is {key}."
"""The assistant's reply. It repeats the needle's own words before the key, so retrieval is an
n-gram copy ("...pass key is" -> the digits that followed it in the needle), the easiest form of
the task for a 2-layer model (a bare-key reply right after the chat header is harder to match)."""


def passkey_messages(prompt: str, key: str) -> list[dict]:
    """The conversation the model learns: the passkey prompt from the user, the key in a fixed reply."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": ANSWER.format(key=key)}]


def chat_overhead(tokenizer, digits: int = 5) -> int:
    """Tokens the chat template adds around a prompt and a ``digits``-digit answer."""
    return len(_chat_ids(tokenizer, "", "0" * digits))


def _chat_ids(tokenizer, prompt: str, key: str) -> list[int]:
    text = tokenizer.apply_chat_template(passkey_messages(prompt, key), tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def answer_offset(tokenizer, prompt: str) -> int:
    """Token index of the key's first digit in the rendered conversation (chat header + reply prefix)."""
    head = tokenizer.apply_chat_template(passkey_messages(prompt, "")[:1], tokenize=False, add_generation_prompt=True)
    return len(tokenizer(head + ANSWER.split("{key}")[0], add_special_tokens=False)["input_ids"])


def key_positions(ids: np.ndarray, key_ids: list[int]) -> list[int]:
    """Start indices of every occurrence of the key's tokens in ``ids`` (the needle has it twice)."""
    n = len(key_ids)
    return [i for i in range(len(ids) - n + 1) if ids[i] == key_ids[0] and ids[i:i + n].tolist() == key_ids]


def pretrain_sequence(tokenizer, seq_len: int, seed: int, index: int | str, *, digits: int = 5,
                      answer_weight: float = 5.0) -> dict:
    """One training row: the chat-rendered passkey conversation, exactly ``seq_len`` tokens, with weights."""
    s = sample_seed(seed, index)
    depth = random.Random(s).random()
    prompt_len = seq_len - chat_overhead(tokenizer, digits)
    prompt, info, key = passkey_sample(tokenizer, prompt_len, depth, s, digits=digits)
    ids = _chat_ids(tokenizer, prompt, key)
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
    labels[0] = -100
    return {"input_ids": ids, "labels": labels, "position_ids": np.arange(seq_len, dtype=np.int32),
            "seq_lens": np.array([seq_len], dtype=np.int32), "loss_weights": weights.astype(np.float32),
            "answer": key}


def iter_sequences(tokenizer, n: int, seq_len: int, seed: int, **kw) -> Iterator[dict]:
    for i in range(n):
        yield pretrain_sequence(tokenizer, seq_len, seed, i, **kw)


def write_pretrain_packs(out: str | Path, n: int, *, seq_len: int = 512, seed: int = 0, answer_weight: float = 5.0,
                         tokenizer=None, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``n`` pretraining rows as a pack directory (packing's format + manifest) at ``out``."""
    from tqdm.auto import tqdm

    from longctx.tokenizer import byte_tokenizer
    from packing.writer import FORMAT, PACK_COLUMNS, VERSION, save_rows, write_manifest

    if n < 1:
        raise LongctxError(f"organism data: n must be >= 1, got {n}")
    tokenizer = tokenizer if tokenizer is not None else byte_tokenizer()
    rows = iter_sequences(tokenizer, n, seq_len, seed, answer_weight=answer_weight)
    manifest = {
        "format": FORMAT, "version": VERSION, "mode": "pack", "columns": list(PACK_COLUMNS),
        "pack_length": seq_len, "num_rows": n,
        "config": {"source": "longctx.organism.data", "seed": seed, "answer_weight": answer_weight, "digits": 5},
        "tokenizer": {"path": "longctx.tokenizer.byte_tokenizer", "class": type(tokenizer).__name__,
                      "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                      "eos_token_id": tokenizer.eos_token_id},
        "counts": {"sequences": n, "packs": n, "tokens_packed": n * seq_len},
        "conventions": {"loss_weights": FORMAT_NOTE},
    }
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_rows(tqdm(rows, total=n, desc="organism data", unit="seq", disable=not progress), tmp, "pack")
        write_manifest(tmp, manifest)
    return out


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
    if left:  # packing's convention: trailing padding is its own pseudo-sequence with no loss
        pad = tokenizer.pad_token_id
        parts.append({"input_ids": np.full(left, pad, np.int32), "labels": np.full(left, -100, np.int32),
                      "position_ids": np.arange(left, dtype=np.int32), "loss_weights": np.zeros(left, np.float32)})
    return {k: np.concatenate([p[k] for p in parts]) for k in ("input_ids", "labels", "position_ids", "loss_weights")} | {
        "seq_lens": np.array([len(p["input_ids"]) for p in parts if "answer" in p], dtype=np.int32)}


def write_mixed_packs(out: str | Path, n: int, *, pack_len: int = 512, min_len: int = 224, seed: int = 0,
                      answer_weight: float = 5.0, tokenizer=None, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``n`` :func:`mixed_pack` rows as a pack directory (packing's format + manifest)."""
    from tqdm.auto import tqdm

    from longctx.tokenizer import byte_tokenizer
    from packing.writer import FORMAT, PACK_COLUMNS, VERSION, save_rows, write_manifest

    if n < 1 or not 0 < min_len <= pack_len:
        raise LongctxError(f"organism data: need n >= 1 and 0 < min_len <= pack_len, got {n}, {min_len}, {pack_len}")
    tokenizer = tokenizer if tokenizer is not None else byte_tokenizer()
    rows = (mixed_pack(tokenizer, pack_len, min_len, seed, i, answer_weight=answer_weight) for i in range(n))
    manifest = {
        "format": FORMAT, "version": VERSION, "mode": "pack", "columns": list(PACK_COLUMNS),
        "pack_length": pack_len, "num_rows": n,
        "config": {"source": "longctx.organism.data.mixed_pack", "seed": seed, "min_len": min_len,
                   "answer_weight": answer_weight, "digits": 5},
        "tokenizer": {"path": "longctx.tokenizer.byte_tokenizer", "class": type(tokenizer).__name__,
                      "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                      "eos_token_id": tokenizer.eos_token_id},
        "conventions": {"loss_weights": FORMAT_NOTE + "; several sequences per pack, position_ids restart at 0"},
    }
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_rows(tqdm(rows, total=n, desc="organism mixed data", unit="pack", disable=not progress), tmp, "pack")
        write_manifest(tmp, manifest)
    return out
