"""RULER's two haystack layouts, sized so a prompt can fill its length to the token.

- **Lines** (``niah.py`` noise and needle haystacks, ``variable_tracking.py``): a list of lines joined by
  ``"\\n"``; needles and statements go in with ``list.insert`` at indexes drawn per sample, as RULER's
  ``sentences.insert(index, element)``. RULER's unit is a whole line; ours is a token: the lines are
  whole, except the first, which is the first tokens of one more line (a *fragment*, empty when the
  length needs just one more token) when the length needs part of a line. A fragment is a line like the
  others for the insertion indexes.
- **Essay** (``niah.py`` essay haystack): the text's first words (repeated when the text is too short,
  as RULER does), cut into sentences; needle ``k`` goes before sentence ``int(len(sentences) * depth_k /
  100)`` and the pieces are joined with spaces, empty ones included (RULER's double spaces, where two
  needles share a position, are kept). RULER's unit is a word; ours is a character, so the last word may
  be cut (or followed by its space).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from typing import Any

from eval_longbench.haystack import split_sentences
from eval_longbench.ruler.base import GenContext, fit_exact


class LineSource:
    """Haystack lines ``0, 1, 2, ...``: ``make(rng)`` draws each, in order, from one seeded stream (so
    line ``i`` is the same whichever length asks for it)."""

    def __init__(self, make: Callable[[random.Random], str], rng: random.Random):
        self.make, self.rng, self.lines = make, rng, []

    def __call__(self, i: int) -> str:
        while len(self.lines) <= i:
            self.lines.append(self.make(self.rng))
        return self.lines[i]


@functools.lru_cache(maxsize=1 << 16)
def _line_ids(tokenizer, line: str) -> tuple[int, ...]:
    return tuple(tokenizer(line, add_special_tokens=False)["input_ids"])


def line_haystack(line: Callable[[int], str], size: int, tokenizer) -> tuple[str | None, list[str]]:
    """``(fragment, whole lines)`` for ``size`` units: lines ``line(0..m-1)`` whole (a line's tokens + 1 for
    its newline), then what is left, which goes first as a fragment line: 1 unit an empty line, ``k + 1``
    units the first ``k`` tokens of line ``m``; ``None`` when nothing is left. So each unit adds about one
    token to the prompt, even where a fragment starts (its newline alone would add two). The fragment is a
    line's head: it starts like every line and ends before a newline, so no token merges across its cut."""
    whole: list[str] = []
    used = 0
    while True:
        nxt = line(len(whole))
        ids = _line_ids(tokenizer, nxt)
        if used + len(ids) + 1 > size:
            break
        whole.append(nxt)
        used += len(ids) + 1
    rest = size - used
    if rest == 0:
        return None, whole
    return (tokenizer.decode(list(ids[:rest - 1]), skip_special_tokens=True) if rest > 1 else ""), whole


def haystack_lines(fragment: str | None, whole: list[str]) -> list[str]:
    return ([] if fragment is None else [fragment]) + whole


def insert_lines(lines: Sequence[str], items: Sequence[str], indexes: Sequence[int]) -> list[str]:
    """RULER's insertion: ``lines.insert(index, item)`` for each pair in order (an index past the end appends)."""
    out = list(lines)
    for index, item in zip(indexes, items):
        out.insert(index, item)
    return out


def essay_text(full: str, chars: int) -> tuple[str, float]:
    """The first ``chars`` characters of ``full`` (the essay's words joined by spaces), repeated when it is
    too short (RULER: ``(haystack * repeats)[:num_haystack]``); also the repeat factor (at least 1)."""
    if not full:
        raise ValueError("the essay haystack has no words")
    repeats = chars / len(full)
    if chars > len(full):
        full = " ".join([full] * (chars // (len(full) + 1) + 1))
    return full[:chars], max(1.0, repeats)


def essay_context(text: str, needles: Sequence[str], depths: Sequence[int]) -> str:
    """RULER's essay insertion: needle ``i`` (in order) before sentence ``int(n * depth / 100)`` of the
    sorted positions, the pieces joined by single spaces. A cut that ends in a space keeps it (RULER's
    whole words never do): each character then adds one, which a byte tokenizer needs to fill exactly."""
    sents = split_sentences(text)
    if sents and text[-1:].isspace():
        sents[-1] += " "
    cuts = [0] + sorted(int(len(sents) * (d / 100)) for d in depths) + [len(sents)]
    parts = []
    for i in range(1, len(cuts)):
        parts.append(" ".join(sents[cuts[i - 1]:cuts[i]]))
        if i - 1 < len(needles):
            parts.append(needles[i - 1])
    return " ".join(parts)


def fit_lines(ctx: GenContext, budget: int, line: Callable[[int], str], insert: Callable[[list[str], Any], list[str]],
              draw: Callable[[int], Any], render: Callable[[str], str]) -> tuple[str, int, Any, str, int]:
    """A line haystack that fills ``budget``: ``(prompt, tokens, plan, fragment, number of lines)``.

    RULER draws the insertion indexes from the line count, which the fit decides, so: fit first with every
    item at the front (``insert(lines, None)``; where the items go barely moves the count), then ``plan =
    draw(lines)`` and refit only if the count moved. ``render(context)`` is the whole prompt.
    """
    tok = ctx.tokenizer

    def build(size: int, plan: Any) -> str:
        return render("\n".join(insert(haystack_lines(*line_haystack(line, size, tok)), plan)))

    prompt, size, tokens = fit_exact(ctx, budget, lambda n: build(n, None), guess=budget)
    plan = draw(len(haystack_lines(*line_haystack(line, size, tok))))
    prompt = build(size, plan)
    if ctx.count(prompt) != tokens:
        prompt, size, tokens = fit_exact(ctx, budget, lambda n: build(n, plan), guess=size)
    fragment, whole = line_haystack(line, size, tok)
    return prompt, tokens, plan, fragment, len(haystack_lines(fragment, whole))
