"""RULER's common-word extraction (aggregation): the 10 words repeated most in a long numbered list.

The list holds ``num_cw`` common words ``freq_cw`` times each and as many other words as fit
``freq_ucw`` times each (RULER: 30 and 3 from 4K tokens on, 6 and 1 below), shuffled and numbered
``1. word 2. word ...``. The answer is the common words; the score is the fraction named in the reply.
RULER puts one worked example first; we do not (a short window has no room for it).
"""

from __future__ import annotations

import functools

from eval_longbench.ruler.base import GenContext, RulerTask, Sample, fit_count, task_rng
from eval_longbench.ruler.texts import word_pool

INTRO = ("Below is a numbered list of words. In these words, some appear more often than others. "
         "Memorize the ones that appear most often.")
QUESTION = ("Question: What are the {n} most common words in the above list?"
            " Answer: The top {n} words that appear most often in the list are:")


def frequencies(length: int, freq_cw: int, freq_ucw: int) -> tuple[int, int]:
    """RULER's repeats: ``(freq_cw, freq_ucw)`` from 4096 tokens on, ``(6, 1)`` for shorter lengths."""
    return (freq_cw, freq_ucw) if length >= 4096 else (6, 1)


def make_cwe(num_cw: int, freq_cw: int, freq_ucw: int, name: str, ctx: GenContext, length: int, budget: int,
             seed: int) -> Sample:
    common_n, uncommon_n = frequencies(length, freq_cw, freq_ucw)
    rng = task_rng(name, seed)
    order_seed = rng.random()

    def build(n_uncommon: int) -> tuple[str, list[str]]:
        words = word_pool(num_cw + n_uncommon, task_rng(name, seed))
        common, uncommon = words[:num_cw], words[num_cw:]
        items = common * common_n + uncommon * uncommon_n
        task_rng(f"{name}:order:{order_seed}", len(items)).shuffle(items)
        context = " ".join(f"{i + 1}. {w}" for i, w in enumerate(items))
        return INTRO + "\n" + context + "\n" + QUESTION.format(n=num_cw), common

    prompt, common, n, tokens = fit_count(ctx, budget, build, low=0, guess=max(1, budget // 16))
    return Sample(prompt, common, tokens, {"uncommon_words": n, "repeats": [common_n, uncommon_n]})


TASKS = [
    RulerTask("cwe", "cwe", functools.partial(make_cwe, 10, 30, 3, "cwe"), metric="all", max_new_tokens=120,
              params={"num_cw": 10, "freq_cw": 30, "freq_ucw": 3}),
]
