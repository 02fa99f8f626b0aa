"""Haystacks: filler text, sentence boundaries, needle insertion and a token-exact length fit.

Pure functions of (tokenizer, length, depth, seed): the same arguments give the same prompt, so
the passkey generator doubles as a training-data generator (the shipped tiny model is pretrained
on exactly these samples).

Why sentence boundaries found in the *text*: LongAlign's needle test searches for a hard-coded
period token id, which only exists in GLM's vocabulary, so for other tokenizers the needle lands at
position 0. Here boundaries are character offsets after ``.``, ``!`` or ``?`` plus whitespace, so
the placement is the same for every tokenizer. A text with no sentence break near the asked depth
(no punctuation, or very long sentences) falls back to the nearest word break, then to the exact
character, so the needle is never silently moved far from its depth. A haystack holding the
tokenizer's special tokens is refused (:func:`check_filler`): they vanish when decoded, so the
prompt would come out shorter than asked.

Why depth in *tokens*: :func:`fit_prompt` puts a needle asked at depth ``d`` at the boundary nearest
the point with a fraction ``d`` of the haystack's *tokens* before it, so placement does not depend on
how many characters a token covers (a Chinese haystack, one to three characters a token, drifted
from an English one at the same depth). Chinese/Japanese sentence ends (``。！？``, no space
needed) are sentence boundaries too. With a byte tokenizer and ASCII text a token is a character,
so the built-in passkey prompts are byte-identical to the character-depth placement before.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from longctx.core.errors import LongctxError
from longctx.core.io import read_text

# RULER-style noise: short, true, boring sentences; shuffled with the seed so the haystack is not
# one period repeated (the model must find the needle, not a break in the rhythm).
NOISE_SENTENCES: tuple[str, ...] = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
    "The river runs to the sea.",
    "Birds sing in the morning.",
    "The road is long and quiet.",
    "Snow falls in the winter.",
    "The moon is bright tonight.",
    "Leaves turn brown in autumn.",
    "The wind blows from the west.",
    "A cat sleeps on the warm step.",
    "The bread is fresh today.",
    "Clouds drift over the hills.",
    "The clock ticks on the wall.",
)

# Short on purpose: at 256 tokens of a byte-level tokenizer, every word of overhead is haystack lost.
PASSKEY_INTRO = "A pass key is hidden in the text below. Find it and remember it."
PASSKEY_NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
PASSKEY_QUESTION = "What is the pass key? The pass key is"

_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+|[。！？][\"')\]”’」』）]*\s*")
_WORD_BREAK = re.compile(r"\s+")

MAX_MISS_CHARS = 32  # above half the longest noise sentence: the built-in haystack always uses sentence boundaries
MAX_MISS_FRACTION = 0.02
"""A sentence boundary farther than ``max(MAX_MISS_CHARS, MAX_MISS_FRACTION * len(text))`` characters
from the asked depth is not used: the needle goes at a word break (or character) there instead."""
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？])[”’」』）]*\s*")


def noise_stream(seed: int) -> Iterator[str]:
    """Endless noise sentences: each round is a fresh seeded shuffle of :data:`NOISE_SENTENCES`."""
    rng = random.Random(seed)
    pool = list(NOISE_SENTENCES)
    while True:
        rng.shuffle(pool)
        yield from pool


def builtin_text(tokens: int) -> str:
    """The text ``longctx ppl --text builtin`` scores (and the quick start with it): seed-0 noise sentences,
    enough for ``tokens`` tokens of any tokenizer (every noise sentence has >= 4 tokens)."""
    stream = noise_stream(0)
    return " ".join(next(stream) for _ in range(tokens // 2 + 64))


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at ``[.!?]`` followed by whitespace (collapses whitespace runs)."""
    return [s.strip() for s in _SPLIT.split(" ".join(text.split())) if s.strip()]


def _haystack_text(path: Path) -> str:
    """The UTF-8 text of one haystack file, refusing NUL characters: they are not text (a UTF-16 or
    binary file read as UTF-8), tokenizers drop or merge them, and then a needle asked at 50 % lands at
    another depth (or at 0 when the whole haystack decodes to nothing), silently."""
    text = read_text(path, what="a UTF-8 text file")
    nul = text.find("\0")
    if nul >= 0:
        raise LongctxError(f"{path}: holds NUL characters (the first at offset {nul}): not plain text "
                           "(a UTF-16 or binary file?); save it as UTF-8 text")
    return text


def read_text_sources(paths: Sequence[str | Path]) -> str:
    """Concatenate UTF-8 text files; a directory contributes its ``*.txt`` files in sorted order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.txt"))
            if not found:
                raise LongctxError(f"{p}: directory has no *.txt files")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise LongctxError(f"{p}: no such file or directory")
    parts = [_haystack_text(f) for f in files]
    text = "\n\n".join(t.strip() for t in parts if t.strip())
    if not text:
        raise LongctxError(f"{', '.join(map(str, files))}: text is empty")
    return text


def text_stream(sentences: Sequence[str], seed: int) -> Iterator[str]:
    """Endless sentences from user text, in order, starting at a seeded offset and wrapping around."""
    if not sentences:
        raise LongctxError("haystack text has no sentences")
    i = random.Random(seed).randrange(len(sentences))
    while True:
        yield sentences[i]
        i = (i + 1) % len(sentences)


def filler_stream(filler: Sequence[str] | None, seed: int) -> Iterator[str]:
    """The haystack sentences of one sample: seeded noise when ``filler`` is ``None``, else the user's text."""
    return noise_stream(seed) if filler is None else text_stream(filler, seed)


def sentence_boundaries(text: str) -> list[int]:
    """Character offsets where a sentence starts: 0, after each ``[.!?]`` + whitespace, and the end."""
    cuts = [len(text) - len(text.lstrip())] + [m.end() for m in _BOUNDARY.finditer(text)]
    if cuts[-1] != len(text):
        cuts.append(len(text))
    return sorted(set(cuts))


def _max_miss(text: str) -> float:
    return max(MAX_MISS_CHARS, MAX_MISS_FRACTION * len(text))


def boundary_at_depth(text: str, depth: float) -> int:
    """The sentence boundary of ``text`` nearest to ``depth * len(text)`` (0 = start, 1 = end); when
    none is within :data:`MAX_MISS_CHARS` / :data:`MAX_MISS_FRACTION` of it, the nearest word break,
    else the character offset itself."""
    if not 0.0 <= depth <= 1.0:
        raise LongctxError(f"depth {depth}: must be within [0, 1]")
    return boundary_near(text, depth * len(text))


def boundary_near(text: str, target: float) -> int:
    """The sentence boundary of ``text`` nearest to character offset ``target``, with the fallbacks
    of :func:`boundary_at_depth`."""
    best = min(sentence_boundaries(text), key=lambda c: (abs(c - target), c))
    if abs(best - target) <= _max_miss(text):
        return best
    words = [0] + [m.end() for m in _WORD_BREAK.finditer(text)] + [len(text)]
    best = min(words, key=lambda c: (abs(c - target), c))
    return best if abs(best - target) <= _max_miss(text) else round(target)


def check_filler(tokenizer, sentences: Sequence[str], name: str) -> None:
    """Refuse a haystack that holds the tokenizer's special tokens (one line naming ``name``, the
    files): decoding drops them, so needles would land off their depth and prompts come out short."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    if not special or not sentences:
        return
    ids = tokenizer(" ".join(sentences), add_special_tokens=False)["input_ids"]
    found = [i for i in ids if i in special]
    if found:
        tok = tokenizer.convert_ids_to_tokens(found[0])
        what = "only special tokens" if len(found) == len(ids) else f"{len(found)} special tokens (e.g. {tok!r})"
        raise LongctxError(f"{name}: the haystack holds {what} of this tokenizer, which are dropped as text; remove them")


def insert_needles(text: str, needles: Sequence[tuple[str, float]], *,
                   at: Sequence[float] | None = None) -> tuple[str, list[int]]:
    """Insert each ``(needle, depth)`` at the sentence boundary of the *original* text nearest its depth
    (or nearest the character offset ``at[i]`` when ``at`` is given: a depth measured in tokens).

    Returns the new text and, per needle (input order), the haystack offset where it went in, so
    ``offset / len(text)`` is the achieved depth. The haystack's own characters are kept exactly
    (only a space is added next to each needle), so its token count grows smoothly with its length.
    """
    if at is None:
        cuts = [boundary_at_depth(text, d) for _, d in needles]
    else:
        cuts = [boundary_near(text, c) for c in at]
    order = sorted(range(len(needles)), key=lambda i: (cuts[i], i))
    out, prev = [], 0
    for i in order:
        out.append(text[prev:cuts[i]])
        at_end = cuts[i] == len(text) and text and not text[-1].isspace()
        out.append(" " + needles[i][0] if at_end else needles[i][0] + " ")
        prev = cuts[i]
    out.append(text[prev:])
    return "".join(out), cuts


def insert_at_depth(text: str, needle: str, depth: float) -> tuple[str, int]:
    """Insert one ``needle`` at the sentence boundary nearest to ``depth``; returns (text, haystack offset)."""
    new, cuts = insert_needles(text, [(needle, depth)])
    return new, cuts[0]


@dataclass(frozen=True)
class Needle:
    text: str
    depth: float  # fraction of the haystack before the needle, in [0, 1]


def _ntok(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@functools.lru_cache(maxsize=8192)
def _sentence_ntok(tokenizer, sentence: str) -> int:
    """Token count of one filler sentence (+ its trailing space); cached across samples."""
    return _ntok(tokenizer, sentence + " ")


def fit_prompt(
    tokenizer,
    context_tokens: int,
    needles: Sequence[Needle],
    *,
    intro: str,
    question: str,
    sentences: Iterator[str],
) -> tuple[str, dict]:
    """Build ``intro \\n haystack-with-needles \\n question`` of exactly ``context_tokens`` tokens.

    Token count is that of ``tokenizer(prompt, add_special_tokens=False)``. The haystack is cut at
    the *front* at token granularity (so it still ends on a whole sentence), then the needles go in
    at sentence boundaries. A binary search on the cut finds the exact length; a tokenizer that
    merges across the cut may make one exact length unreachable, and then the closest shorter
    prompt is returned (``info["n_tokens"]`` always holds the true count).
    """
    overhead = _ntok(tokenizer, intro + "\n" + " ".join(n.text for n in needles) + "\n" + question)
    budget = context_tokens - overhead
    if budget < 1:
        raise LongctxError(f"context length {context_tokens}: too short for the task's {overhead} tokens of intro, needles and question")
    # Collect whole sentences until the haystack alone (tokenized in context) exceeds the budget;
    # per-sentence counts only estimate it, as merges across sentence joins change the total.
    hay, want = [], budget + 16
    while True:
        est = 0
        while est < want:
            s = next(sentences)
            hay.append(s)
            est += _sentence_ntok(tokenizer, s)
        hay_ids = tokenizer(" ".join(hay), add_special_tokens=False)["input_ids"]
        if len(hay_ids) >= budget + 8:
            break
        want = budget + 16 - len(hay_ids)
    full = tokenizer.decode(hay_ids, skip_special_tokens=True)
    starts = set(sentence_boundaries(full))

    def build(k: int) -> tuple[str, list[float]]:
        ids = hay_ids[len(hay_ids) - k:] if k else []
        text = tokenizer.decode(ids, skip_special_tokens=True) if k else ""
        # A cut inside a sentence leaves a fragment in front: it stays, but before any needle.
        lead = len(text) - len(text.lstrip())
        clean = full.endswith(text) and (len(full) - len(text) + lead) in starts
        frag = 0 if clean else _lead_fragment(text)
        rest = text[frag:]
        at = token_depth_offsets(tokenizer, ids, frag, [n.depth for n in needles])
        new, offsets = insert_needles(rest, [(n.text, n.depth) for n in needles], at=at)
        return text[:frag] + new, (rest, offsets)

    def assemble(k: int) -> tuple[str, str, tuple]:
        text, placed = build(k)
        return intro + "\n" + text + "\n" + question, text, placed

    # Secant steps first (one tokenization when counts add up, as for byte tokenizers), then bisection.
    k = max(0, min(budget, len(hay_ids)))
    for _ in range(3):
        cand = assemble(k)
        n = _ntok(tokenizer, cand[0])
        if n == context_tokens:
            prompt, text, placed = cand
            return prompt, {"n_tokens": n, "needle_depths": _token_depths(tokenizer, *placed)}
        k = max(0, min(len(hay_ids), k + context_tokens - n))
    lo, hi = 0, len(hay_ids)  # invariant: count(lo) <= target (or lo == 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _ntok(tokenizer, assemble(mid)[0]) <= context_tokens:
            lo = mid
        else:
            hi = mid - 1
    prompt, text, placed = assemble(lo)
    n = _ntok(tokenizer, prompt)
    for k in range(lo + 1, min(lo + 4, len(hay_ids)) + 1):  # merges can make the count non-monotone by a token
        if n == context_tokens:
            break
        cand = assemble(k)
        if _ntok(tokenizer, cand[0]) == context_tokens:
            (prompt, _, placed), n = cand, context_tokens
    if n > context_tokens:
        raise LongctxError(f"context length {context_tokens}: cannot fit the task (shortest prompt has {n} tokens)")
    info = {
        "n_tokens": n,
        "needle_depths": _token_depths(tokenizer, *placed),
    }
    return prompt, info


def token_depth_offsets(tokenizer, ids: Sequence[int], skip_chars: int, depths: Sequence[float]) -> list[float]:
    """Character offsets into ``decode(ids)[skip_chars:]`` with a fraction ``depths[i]`` of its tokens before.

    ``char_at(t)`` (the length of the first ``t`` tokens decoded) maps token positions to characters;
    a fractional position is interpolated inside its token. Where every token is one character the
    offset equals ``depth * len(text)`` exactly (the arithmetic below keeps it bit-identical), so the
    byte tokenizer's ASCII prompts are what character depths gave.
    """
    k = len(ids)
    if k == 0:
        return [0.0 for _ in depths]
    cache: dict[int, int] = {0: 0}

    def char_at(t: int) -> int:
        if t not in cache:
            cache[t] = len(tokenizer.decode(list(ids[:t]), skip_special_tokens=True))
        return cache[t]

    lo, hi = 0, k  # t0: the first token position at or after the skipped fragment
    while lo < hi:
        mid = (lo + hi) // 2
        if char_at(mid) >= skip_chars:
            hi = mid
        else:
            lo = mid + 1
    t0 = lo
    out = []
    for d in depths:
        t_rel = d * (k - t0)
        f = min(int(t0 + t_rel), k - 1) - t0
        if f < 0:
            out.append(0.0)
            continue
        c0, c1 = char_at(t0 + f) - skip_chars, char_at(t0 + f + 1) - skip_chars
        out.append(max(0.0, c0 + (t_rel - f) * (c1 - c0)))
    return out


def _token_depths(tokenizer, rest: str, offsets: Sequence[int]) -> list[float]:
    """Achieved needle depths in tokens: tokens of the haystack before each needle / all its tokens."""
    total = max(_ntok(tokenizer, rest), 1)
    return [round(_ntok(tokenizer, rest[:o]) / total, 4) for o in offsets]


def _lead_fragment(text: str) -> int:
    """Where the partial sentence at the front of a cut haystack ends: the first sentence boundary,
    or (when that is far, or absent) the first word break, or 0; needles go after it."""
    m = _BOUNDARY.search(text)
    if m and m.end() <= _max_miss(text):
        return m.end()
    if len(text) <= _max_miss(text):  # a short text that is all fragment stays whole, before the needles
        return len(text)
    w = _WORD_BREAK.search(text)
    return w.end() if w and w.end() <= _max_miss(text) else 0


def make_passkey_sample(
    tokenizer,
    context_tokens: int,
    depth: float,
    seed: int,
    *,
    digits: int = 5,
    filler: Sequence[str] | None = None,
) -> tuple[str, str]:
    """The passkey-retrieval prompt (YaRN / LongLoRA test) and its answer; pure in all arguments.

    ``prompt`` has exactly ``context_tokens`` tokens (without special tokens) and ends with
    ``"The pass key is"``; the answer is the ``digits``-digit key. ``filler`` is a list of
    sentences (see :func:`split_sentences`); ``None`` means seeded RULER-style noise.
    """
    prompt, _, answer = passkey_sample(tokenizer, context_tokens, depth, seed, digits=digits, filler=filler)
    return prompt, answer


def passkey_sample(tokenizer, context_tokens: int, depth: float, seed: int, *, digits: int = 5,
                   filler: Sequence[str] | None = None) -> tuple[str, dict, str]:
    """:func:`make_passkey_sample` plus the placement info (token count, achieved needle depth)."""
    rng = random.Random(f"passkey:{seed}")
    key = str(rng.randrange(10 ** (digits - 1), 10**digits))
    prompt, info = fit_prompt(
        tokenizer, context_tokens, [Needle(PASSKEY_NEEDLE.format(key=key), depth)],
        intro=PASSKEY_INTRO, question=PASSKEY_QUESTION, sentences=filler_stream(filler, seed),
    )
    return prompt, info, key
