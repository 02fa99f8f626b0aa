"""RULER's two haystack layouts, sized in characters so a prompt can fill its length to the token.

- **Lines** (``niah.py`` noise and needle haystacks, ``variable_tracking.py``): a list of lines joined by
  ``"\\n"``; needles and statements go in with ``list.insert`` at indexes drawn per sample, as RULER's
  ``sentences.insert(index, element)``. RULER's unit is a whole line; ours is a character: the lines are
  whole, except the first, which is the tail of one more line (a *fragment*) when the length needs part
  of a line. A fragment is a line like the others for the insertion indexes.
- **Essay** (``niah.py`` essay haystack): the text's first words (repeated when the text is too short,
  as RULER does), cut into sentences; needle ``k`` goes before sentence ``int(len(sentences) * depth_k /
  100)`` and the pieces are joined with spaces, empty ones included (RULER's double spaces, where two
  needles share a position, are kept). RULER's unit is a word; ours is a character, so the last word may
  be cut.
"""

from __future__ import annotations

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


def line_haystack(line: Callable[[int], str], chars: int) -> list[str]:
    """The haystack lines of ``chars`` characters (joined by ``"\\n"``): lines ``line(0..m-1)`` whole,
    preceded by the tail of line ``m`` (the rest of ``chars``) when that is not empty."""
    whole: list[str] = []
    used = 0
    while True:
        nxt = line(len(whole))
        need = len(nxt) + (1 if whole else 0)
        if used + need > chars:
            break
        whole.append(nxt)
        used += need
    rest = chars - used - (1 if whole else 0)  # a fragment in front needs its own "\n"
    return ([nxt[len(nxt) - rest:]] if rest > 0 else []) + whole


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
    return full[:chars].rstrip(), max(1.0, repeats)


def essay_context(text: str, needles: Sequence[str], depths: Sequence[int]) -> str:
    """RULER's essay insertion: needle ``i`` (in order) before sentence ``int(n * depth / 100)`` of the
    sorted positions, the pieces joined by single spaces."""
    sents = split_sentences(text)
    cuts = [0] + sorted(int(len(sents) * (d / 100)) for d in depths) + [len(sents)]
    parts = []
    for i in range(1, len(cuts)):
        parts.append(" ".join(sents[cuts[i - 1]:cuts[i]]))
        if i - 1 < len(needles):
            parts.append(needles[i - 1])
    return " ".join(parts)


def fit_lines(ctx: GenContext, budget: int, line: Callable[[int], str], insert: Callable[[list[str], Any], list[str]],
              draw: Callable[[int], Any], render: Callable[[str], str]) -> tuple[str, int, int, Any, int]:
    """A line haystack that fills ``budget``: ``(prompt, chars, tokens, plan, lines)``.

    RULER draws the insertion indexes from the line count, which the fit decides, so: fit first with every
    item at the front (``insert(lines, None)``; where the items go barely moves the count), then ``plan =
    draw(lines)`` and refit only if the count moved. ``render(context)`` is the whole prompt.
    """
    def build(chars: int, plan: Any) -> str:
        return render("\n".join(insert(line_haystack(line, chars), plan)))

    prompt, chars, tokens = fit_exact(ctx, budget, lambda c: build(c, None), guess=4 * budget)
    n_lines = len(line_haystack(line, chars))
    plan = draw(n_lines)
    prompt = build(chars, plan)
    if ctx.count(prompt) != tokens:
        prompt, chars, tokens = fit_exact(ctx, budget, lambda c: build(c, plan), guess=chars)
        n_lines = len(line_haystack(line, chars))
    return prompt, chars, tokens, plan, n_lines
