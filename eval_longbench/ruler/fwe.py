"""RULER's frequent-word extraction (aggregation): the 3 most frequent made-up words of a Zipf text.

Follows NVIDIA/RULER ``scripts/data/synthetic/freq_words_extraction.py`` with the template and answer
prefix of its ``constants.py`` (the prefix opens the assistant turn, :class:`GenContext.render`).

A vocabulary of random 6-letter coded words (size ``length // 50``, RULER's) is drawn with Zipf counts
``int(N * k**-alpha / zeta(alpha))`` for rank ``k``; rank 1 is the noise word ``...``, so the answer is
ranks 2-4. ``N`` is the largest that fits. The counts of ranks 2-4 must beat rank 5's strictly, or the
answer would be a tie: a length too short for that has no score (:class:`DoesNotFit`).
"""

from __future__ import annotations

import functools
import string

from eval_longbench.ruler.base import DoesNotFit, GenContext, RulerTask, Sample, fit_count, task_rng

TEMPLATE = ("Read the following coded text and track the frequency of each coded word. Find the three most "
            "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore "
            "the dots '....'. What are the three most frequently appeared words in the above coded text?")
ANSWER_PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"


@functools.lru_cache(maxsize=16)
def zeta(alpha: float, terms: int = 10_000) -> float:
    """Riemann zeta(alpha) for alpha > 1: the sum below ``terms`` plus the Euler-Maclaurin tail."""
    return sum(k ** -alpha for k in range(1, terms)) + terms ** (1 - alpha) / (alpha - 1) + 0.5 * terms ** -alpha


def zipf_counts(n_words: int, vocab_size: int, alpha: float) -> list[int]:
    """RULER's counts per rank: ``int(n_words * k**-alpha / zeta(alpha))`` for k = 1..vocab_size."""
    z = zeta(alpha)
    return [int(n_words * k ** -alpha / z) for k in range(1, vocab_size + 1)]


def make_fwe(alpha: float, word_len: int, name: str, ctx: GenContext, length: int, budget: int, seed: int) -> Sample:
    rng = task_rng(name, seed)
    vocab_size = max(5, budget // 50)
    vocab: list[str] = []
    while len(vocab) < vocab_size:
        w = "".join(rng.choices(string.ascii_lowercase, k=word_len))
        if w not in vocab:
            vocab.append(w)
    vocab[0] = "..."  # the most frequent "word" is noise, as in RULER
    order_seed = rng.random()

    def build(n_words: int) -> tuple[str, list[int]]:
        counts = zipf_counts(n_words, vocab_size, alpha)
        words = [w for w, c in zip(vocab, counts) for _ in range(c)]
        task_rng(f"{name}:order:{order_seed}", n_words).shuffle(words)
        return ctx.render(TEMPLATE.format(context=" ".join(words)), ANSWER_PREFIX), counts

    prompt, counts, n, tokens = fit_count(ctx, budget, build, low=1, guess=max(2, budget // 4))
    if not counts[3] > counts[4]:
        raise DoesNotFit(f"{budget} tokens hold only {n} words: the third and fourth most frequent words tie")
    return Sample(prompt, vocab[1:4], tokens, {"words": n, "top_counts": counts[:5]})


TASKS = [
    RulerTask("fwe", "fwe", functools.partial(make_fwe, 2.0, 6, "fwe"), metric="all", max_new_tokens=50,
              params={"alpha": 2.0, "coded_word_len": 6, "vocab": "length // 50"}),
]
