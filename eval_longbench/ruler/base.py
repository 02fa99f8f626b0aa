"""What a RULER task is: a seeded prompt generator plus a scorer, and the token-exact fitting they share.

A task turns ``(context, length, budget, seed)`` into a :class:`Sample` whose prompt is laid out as
NVIDIA/RULER lays it out (``scripts/data/prepare.py``: ``model_template.format(task_template=...) +
answer_prefix``): the task text is the user turn and the answer prefix (`` The special magic number for
... is``) opens the assistant turn, after the chat template's generation prompt. The prompt has at most
``budget`` tokens of the model's tokenizer (chat template, examples and answer prefix counted), exactly
``budget`` for the haystack tasks. The runner sets ``budget = length - max_new_tokens`` (RULER's rule:
prompt plus answer fit the length).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eval_longbench.models import chat_prompt
from eval_longbench.ruler.texts import Haystack
from longctx.core.errors import LongctxError

DEPTHS = tuple(round(100 * i / 39) for i in range(40))
"""RULER's depths in percent: ``np.round(np.linspace(0, 100, num=40)).astype(int)`` (no ties, so ``round``
agrees); the essay haystack draws its needle depths from them."""


class DoesNotFit(LongctxError):
    """The task's shortest prompt is longer than the budget: the cell has no score at this length."""


@dataclass(frozen=True)
class Sample:
    prompt: str
    """What ``generate`` receives: for a local chat model the templated conversation up to and including
    the answer prefix (``generate`` adds nothing); for a server that applies the template itself, the user
    message (task text + answer prefix); without a chat template, the task text + answer prefix."""
    answers: list[str]
    """Reference strings; the scorer looks for them in the prediction (the reply after the prefix)."""
    n_tokens: int
    """Tokens the model reads for ``prompt`` (chat template and special tokens included)."""
    info: dict = field(default_factory=dict)
    """Task-specific facts worth keeping (needle positions, haystack size, word counts)."""


@dataclass
class GenContext:
    """What every generator reads: the model's tokenizer, how prompts reach the model, and the optional
    texts (``essay``: the essay haystack, default :func:`~eval_longbench.ruler.texts.default_haystack`;
    ``qa``: QA sets by format, e.g. ``squad``)."""

    tokenizer: Any
    chat: bool = False
    """Prompts go through the tokenizer's chat template (RULER's model template)."""
    server_template: bool = False
    """``generate`` applies the chat template itself (an OpenAI-compatible chat endpoint): the answer
    prefix then ends the user message, as RULER's own API clients send it (``call_api.py``: input +
    answer_prefix as the user turn), since a chat call has no way to start the assistant's turn."""
    essay: Haystack | None = None
    qa: dict[str, Any] = field(default_factory=dict)

    def turn(self, user: str) -> str:
        """``user`` in RULER's model template: one user turn ready for the reply (the chat template with
        its generation prompt), or the text itself without a template or when the server applies it."""
        return chat_prompt(self.tokenizer, user) if self.chat and not self.server_template else user

    def render(self, user: str, prefix: str) -> str:
        """RULER's prompt: the user turn, then the answer prefix (``prepare.py``: template + answer_prefix)."""
        return self.turn(user) + prefix

    def count(self, prompt: str) -> int:
        """Tokens the model reads for a rendered ``prompt`` (as the ``generate`` of this layout builds them)."""
        tok = self.tokenizer
        if self.chat and self.server_template:
            return len(tok(chat_prompt(tok, prompt), add_special_tokens=False)["input_ids"])
        return len(tok(prompt, add_special_tokens=not self.chat)["input_ids"])

    def raw(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


Generator = Callable[[GenContext, int, int, int], Sample]
"""``(context, length, budget, seed) -> Sample``: the final prompt has at most ``budget`` tokens (``length``
minus the answer's reserve; some tasks scale with ``length`` as RULER's do). Raises :class:`DoesNotFit`
when even the shortest prompt is too long."""


def string_match_all(prediction: str, answers: Sequence[str]) -> float:
    """RULER's recall: the fraction of the answers found in the prediction (case-insensitive substring)."""
    if not answers:
        raise ValueError("string_match_all: no reference answers")
    pred = prediction.lower()
    return sum(a.lower() in pred for a in answers) / len(answers)


def string_match_part(prediction: str, answers: Sequence[str]) -> float:
    """RULER's QA score: 1 when any one of the accepted answers is in the prediction (case-insensitive)."""
    if not answers:
        raise ValueError("string_match_part: no reference answers")
    pred = prediction.lower()
    return float(any(a.lower() in pred for a in answers))


METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {"all": string_match_all, "part": string_match_part}


@dataclass(frozen=True)
class RulerTask:
    """One registered task: its name (RULER's), family, generator, metric and generation budget."""

    name: str
    family: str
    generate: Generator
    metric: str = "all"
    """``all`` (string-match-all recall) or ``part`` (any accepted answer; QA)."""
    max_new_tokens: int = 128
    """RULER's ``tokens_to_generate``: reserved out of the length for the answer."""
    params: dict = field(default_factory=dict, compare=False, hash=False)
    """The settings that define the task (haystack, value types, counts); part of :meth:`version`."""
    needs: str | None = None
    """Input the user must supply (``squad``: ``--squad-file``); ``--tasks all`` leaves the task out without it."""
    version: int = 2
    """Bump when the generator's output changes, so stored results of the old prompts are not reused
    (2: RULER's layout: answer prefix in the assistant turn, VT/CWE examples, noise lines, per-sample
    insertion points; 1: the layout before it)."""

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name}: metric {self.metric!r} is not one of {sorted(METRICS)}")

    def config(self, max_new_tokens: int | None = None) -> dict:
        return {"family": self.family, "metric": self.metric, "params": self.params, "version": self.version,
                "max_new_tokens": max_new_tokens or self.max_new_tokens}

    def config_hash(self, max_new_tokens: int | None = None) -> str:
        """Short digest of :meth:`config`: results are keyed by it, so a changed task never reuses old ones."""
        blob = json.dumps(self.config(max_new_tokens), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def score(self, prediction: str, answers: Sequence[str]) -> float:
        return METRICS[self.metric](prediction, answers)


def fit_count(ctx: GenContext, budget: int, build: Callable[[int], tuple[str, Any]], *, low: int,
              guess: int, high: int | None = None) -> tuple[str, Any, int, int]:
    """The largest ``low <= n <= high`` whose ``build(n)`` prompt has at most ``budget`` final tokens.

    For tasks whose size is a count (list items, words), not a cut haystack: grows from ``guess`` by
    doubling, then bisects. Returns ``(prompt, payload, n, tokens)``; :class:`DoesNotFit` when
    ``build(low)`` is already too long.
    """
    def tokens(n: int) -> int:
        return ctx.count(build(n)[0])

    if tokens(low) > budget:
        raise DoesNotFit(f"{budget} tokens cannot hold the task's shortest prompt")
    lo, hi = low, max(low + 1, guess)
    while (high is None or hi <= high) and tokens(hi) <= budget:
        lo, hi = hi, hi * 2
    if high is not None and hi > high:
        if tokens(high) <= budget:
            prompt, payload = build(high)
            return prompt, payload, high, ctx.count(prompt)
        hi = high
    while hi - lo > 1:  # invariant: tokens(lo) <= budget < tokens(hi)
        mid = (lo + hi) // 2
        if tokens(mid) <= budget:
            lo = mid
        else:
            hi = mid
    prompt, payload = build(lo)
    return prompt, payload, lo, ctx.count(prompt)


EXACT_SCAN = 8
"""Sizes past the largest fitting one that :func:`fit_exact` also tries: a tokenizer that merges across the
cut can make the count dip back (``ky`` is two tokens, ``sky`` one), and one of them may hit the budget."""


def fit_exact(ctx: GenContext, budget: int, render: Callable[[int], str], *, guess: int) -> tuple[str, int, int]:
    """``(prompt, size, tokens)``: the largest haystack ``size`` (characters) whose ``render(size)`` has at
    most ``budget`` final tokens, moved up to one with exactly ``budget`` when one of the next
    :data:`EXACT_SCAN` sizes has it. The character is our unit where RULER's is a whole line or word:
    that is what makes the prompt fill the length to the token."""
    prompt, _, size, tokens = fit_count(ctx, budget, lambda c: (render(c), None), low=0, guess=guess)
    if tokens < budget:
        for c in range(size + 1, size + 1 + EXACT_SCAN):
            p = render(c)
            if ctx.count(p) == budget:
                return p, c, budget
    return prompt, size, tokens


def task_rng(name: str, seed: int) -> random.Random:
    """The task's own random stream for one sample (string-seeded: stable across Python versions)."""
    return random.Random(f"ruler:{name}:{seed}")


def join_list(items: Sequence[str]) -> str:
    """RULER's query list: ``a, b, and c`` (two: ``a, and b``; one: itself)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", and " + items[-1]
