"""RULER's common-word extraction (aggregation): the 10 words repeated most in a long numbered list.

Follows NVIDIA/RULER ``scripts/data/synthetic/common_words_extraction.py`` with the template and answer
prefix of its ``constants.py``. The list holds ``num_cw`` common words ``freq_cw`` times each and as many
other words as fit ``freq_ucw`` times each (RULER: 30 and 3 from 4K tokens on, 6 and 1 below), drawn
from wonderwords' nouns, adjectives and verbs, shuffled and numbered ``1. word 2. word ...``. The answer
is the common words; the score is the fraction named in the reply.

One worked example comes first, as RULER writes it: a whole prompt of its own (model template, a list of
20 words repeated 3/1 times below 4K, 40 words 10/3 times from 4K on, the answer prefix) followed by its
answer, then a newline and the task's prompt. It counts against the length.
"""

from __future__ import annotations

import functools
import random

from eval_longbench.ruler.base import GenContext, RulerTask, Sample, fit_count, task_rng
from eval_longbench.ruler.texts import CweWords, cwe_pool

TEMPLATE = ("Below is a numbered list of words. In these words, some appear more often than others. "
            "Memorize the ones that appear most often.\n{context}\nQuestion: What are the {num_cw} most common words "
            "in the above list?")
ANSWER_PREFIX = " Answer: The top {num_cw} words that appear most often in the list are:"
SHORT = 4096
"""Below this length RULER uses fewer repeats (6/1) and a smaller example (20 words, 3/1)."""


def frequencies(length: int, freq_cw: int, freq_ucw: int) -> tuple[int, int]:
    """RULER's repeats: ``(freq_cw, freq_ucw)`` from 4096 tokens on, ``(6, 1)`` for shorter lengths."""
    return (freq_cw, freq_ucw) if length >= SHORT else (6, 1)


def example_shape(length: int) -> tuple[int, int, int]:
    """RULER's example: ``(words, common repeats, other repeats)`` = ``(40, 10, 3)``, below 4096 ``(20, 3, 1)``."""
    return (40, 10, 3) if length >= SHORT else (20, 3, 1)


def numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


def word_list(words: list[str], num_cw: int, common_n: int, other_n: int, rng: random.Random) -> tuple[str, list[str]]:
    """RULER's ``get_example``: the first ``num_cw`` words ``common_n`` times, the rest ``other_n`` times,
    shuffled and numbered; returns the list's text and the common words."""
    common, other = words[:num_cw], words[num_cw:]
    items = common * common_n + other * other_n
    rng.shuffle(items)
    return numbered(items), common


def make_cwe(num_cw: int, freq_cw: int, freq_ucw: int, name: str, ctx: GenContext, length: int, budget: int,
             seed: int) -> Sample:
    common_n, other_n = frequencies(length, freq_cw, freq_ucw)
    rng = task_rng(name, seed)
    ex_words, ex_common_n, ex_other_n = example_shape(length)
    ex_list, ex_common = word_list(rng.sample(cwe_pool(), ex_words), num_cw, ex_common_n, ex_other_n, rng)
    prefix = ANSWER_PREFIX.format(num_cw=num_cw)
    shot = ctx.render(TEMPLATE.format(num_cw=num_cw, context=ex_list), prefix) + " " + numbered(ex_common)
    words, order_seed = CweWords(random.Random(f"ruler:{name}:{seed}:words")), rng.random()

    def build(n_other: int) -> tuple[str, list[str]]:
        order = task_rng(f"{name}:order:{order_seed}", n_other)
        context, common = word_list(words.take(num_cw + n_other), num_cw, common_n, other_n, order)
        return shot + "\n" + ctx.render(TEMPLATE.format(num_cw=num_cw, context=context), prefix), common

    prompt, common, n, tokens = fit_count(ctx, budget, build, low=0, guess=max(1, budget // 32))
    return Sample(prompt, common, tokens, {"other_words": n, "repeats": [common_n, other_n],
                                           "example": [ex_words, ex_common_n, ex_other_n]})


TASKS = [
    RulerTask("cwe", "cwe", functools.partial(make_cwe, 10, 30, 3, "cwe"), metric="all", max_new_tokens=120,
              params={"num_cw": 10, "freq_cw": 30, "freq_ucw": 3}),
]
