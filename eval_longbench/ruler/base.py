"""What a RULER task is: a seeded prompt generator plus a scorer, and the token-exact fitting they share.

A task turns ``(context, length, budget, seed)`` into a :class:`Sample` whose *final* prompt (what the model
reads: the chat template applied when ``chat``, else the tokenizer's own special tokens added) has at
most ``budget`` tokens of the model's tokenizer, as close to it as the task's granularity allows. The
runner sets ``budget = length - max_new_tokens`` (RULER's rule: prompt plus answer fit the length).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from eval_longbench.haystack import Needle, fit_prompt
from eval_longbench.models import chat_prompt
from longctx.core.errors import LongctxError

DEPTHS = tuple(round(i / 39, 4) for i in range(40))
"""RULER's needle depths: 40 evenly spaced fractions from 0 to 1 (each needle takes a seeded one)."""


class DoesNotFit(LongctxError):
    """The task's shortest prompt is longer than the budget: the cell has no score at this length."""


@dataclass(frozen=True)
class Sample:
    prompt: str
    """The user text (the runner's ``generate`` applies the chat template when the model has one)."""
    answers: list[str]
    """Reference strings; the scorer looks for them in the prediction."""
    n_tokens: int
    """Tokens of the final prompt (chat template included when ``chat``)."""
    info: dict = field(default_factory=dict)
    """Task-specific facts worth keeping (asked and achieved needle depths, word counts)."""


@dataclass
class GenContext:
    """What every generator reads: the model's tokenizer, whether prompts go through its chat template,
    and the optional texts (``essay``: haystack sentences; ``qa``: QA sets by format, e.g. ``squad``)."""

    tokenizer: Any
    chat: bool = False
    essay: Sequence[str] | None = None
    qa: dict[str, Any] = field(default_factory=dict)

    def count(self, prompt: str) -> int:
        """Tokens the model reads for ``prompt`` (as :func:`eval_longbench.models.hf_generate_fn` builds them)."""
        tok = self.tokenizer
        if self.chat:
            return len(tok(chat_prompt(tok, prompt), add_special_tokens=False)["input_ids"])
        return len(tok(prompt, add_special_tokens=True)["input_ids"])

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
    version: int = 1
    """Bump when the generator's output changes, so stored results of the old prompts are not reused."""

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


def fit_haystack(ctx: GenContext, budget: int, needles: Sequence[Needle], *, intro: str, question: str,
                 sentences: Callable[[], Iterator[str]]) -> tuple[str, dict]:
    """``intro \\n haystack-with-needles \\n question`` whose final prompt has at most ``budget`` tokens.

    :func:`eval_longbench.haystack.fit_prompt` fits the raw text exactly (needles at token depths); the
    chat template's (or BOS's) tokens are taken off first, and if a tokenizer merges across the template's
    edges the raw target shrinks by the excess and the fit is redone. ``sentences`` makes a fresh,
    identically seeded haystack stream per try.
    """
    probe = intro + "\n\n" + question
    target = budget - (ctx.count(probe) - ctx.raw(probe))
    for _ in range(4):
        try:
            prompt, info = fit_prompt(ctx.tokenizer, target, needles, intro=intro, question=question, sentences=sentences())
        except LongctxError as e:
            if "too short" in str(e) or "cannot fit" in str(e):
                raise DoesNotFit(f"{budget} tokens cannot hold the task's fixed text") from None
            raise
        n = ctx.count(prompt)
        if n <= budget:
            return prompt, {**info, "n_tokens": n}
        target -= n - budget
    raise DoesNotFit(f"no prompt of at most {budget} tokens found")


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


def task_rng(name: str, seed: int) -> random.Random:
    """The task's own random stream for one sample (string-seeded: stable across Python versions)."""
    return random.Random(f"ruler:{name}:{seed}")


def join_list(items: Sequence[str]) -> str:
    """RULER's query list: ``a, b, and c`` (two: ``a, and b``; one: itself)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", and " + items[-1]
