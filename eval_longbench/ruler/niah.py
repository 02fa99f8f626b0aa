"""RULER's needle-in-a-haystack family: single, multi-key, multi-value and multi-query retrieval.

Needles read ``One of the special magic {numbers} for {key} is: {value}.`` and go in at seeded depths
from RULER's 40-point grid, measured in tokens (:func:`eval_longbench.haystack.fit_prompt`). Haystacks:
``noise`` (the built-in noise sentences), ``essay`` (``--haystack`` text, else the built-in essay) and
``needle`` (the haystack is itself made of needles with other keys: the hardest distractors). The
answer is every value of every asked key; the score is the fraction of them in the reply.
"""

from __future__ import annotations

import functools
import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from eval_longbench.haystack import Needle, filler_stream, split_sentences
from eval_longbench.ruler.base import DEPTHS, GenContext, RulerTask, Sample, fit_haystack, join_list, task_rng
from eval_longbench.ruler.texts import ESSAY, key_words

NEEDLE = "One of the special magic {type} for {key} is: {value}."
INTRO = ("Some special magic {type} are hidden within the following text. Make sure to memorize it. "
         "I will quiz you about the {type} afterwards.")
QUESTION = ("What are all the special magic {type} for {query} mentioned in the provided text?"
            " The special magic {type} for {query} mentioned in the provided text are")


@dataclass(frozen=True)
class NiahSpec:
    haystack: str  # noise | essay | needle
    key_type: str  # words | numbers | uuids
    value_type: str
    num_keys: int = 1
    num_values: int = 1
    num_queries: int = 1


def random_value(kind: str, rng: random.Random) -> str:
    """A 7-digit number, an ``adjective-noun`` word or a UUID4, as RULER draws them."""
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "words":
        return rng.choice(_words())
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle type {kind!r}")


@functools.lru_cache(maxsize=1)
def _words() -> list[str]:
    return key_words()


@functools.lru_cache(maxsize=1)
def essay_sentences() -> list[str]:
    return split_sentences(ESSAY)


def _fresh(kind: str, rng: random.Random, used: set[str]) -> str:
    while True:
        v = random_value(kind, rng)
        if v not in used:
            used.add(v)
            return v


def _texts(spec: NiahSpec) -> tuple[str, str]:
    """Intro and question; one asked value makes RULER's template singular ("A special magic number")."""
    intro, question, kind = INTRO, QUESTION, spec.value_type
    if spec.num_queries * spec.num_values == 1:
        fix = lambda t: t.replace("Some", "A").replace("are all", "is").replace("are", "is")  # noqa: E731
        intro, question, kind = fix(intro), fix(question), kind[:-1]
    return intro.replace("{type}", kind), question.replace("{type}", kind)


def make_niah(spec: NiahSpec, name: str, ctx: GenContext, length: int, budget: int, seed: int) -> Sample:
    rng = task_rng(name, seed)
    used: set[str] = set()
    n_keys = max(spec.num_keys, spec.num_queries)
    keys = [_fresh(spec.key_type, rng, used) for _ in range(n_keys)]
    values = [[_fresh(spec.value_type, rng, used) for _ in range(spec.num_values)] for _ in keys]
    texts = [NEEDLE.format(type=spec.value_type, key=k, value=v) for k, vs in zip(keys, values) for v in vs]
    rng.shuffle(texts)
    depths = sorted(rng.sample(DEPTHS, len(texts)))
    asked = rng.sample(range(n_keys), spec.num_queries)
    answers = [v for i in asked for v in values[i]]
    intro, question = _texts(spec)
    question = question.format(query=join_list([keys[i] for i in asked]))

    def sentences() -> Iterator[str]:
        if spec.haystack == "noise":
            return filler_stream(None, seed)
        if spec.haystack == "essay":
            return filler_stream(ctx.essay if ctx.essay is not None else essay_sentences(), seed)
        hay_rng, taken = random.Random(f"ruler:{name}:{seed}:haystack"), set(used)
        return (NEEDLE.format(type=spec.value_type, key=_fresh(spec.key_type, hay_rng, taken),
                              value=_fresh(spec.value_type, hay_rng, taken)) for _ in itertools.count())

    prompt, info = fit_haystack(ctx, budget, [Needle(t, d) for t, d in zip(texts, depths)], intro=intro,
                                question=question, sentences=sentences)
    return Sample(prompt, answers, info["n_tokens"],
                  {"depths": depths, "needle_depths": info["needle_depths"], "keys": [keys[i] for i in asked]})


def niah_task(name: str, spec: NiahSpec) -> RulerTask:
    return RulerTask(name, "niah", functools.partial(make_niah, spec, name), metric="all", max_new_tokens=128,
                     params=vars(spec).copy())


TASKS = [
    niah_task("niah_single_1", NiahSpec("noise", "words", "numbers")),
    niah_task("niah_single_2", NiahSpec("essay", "words", "numbers")),
    niah_task("niah_single_3", NiahSpec("essay", "words", "uuids")),
    niah_task("niah_multikey_1", NiahSpec("essay", "words", "numbers", num_keys=4)),
    niah_task("niah_multikey_2", NiahSpec("needle", "words", "numbers")),
    niah_task("niah_multikey_3", NiahSpec("needle", "uuids", "uuids")),
    niah_task("niah_multivalue", NiahSpec("essay", "words", "numbers", num_values=4)),
    niah_task("niah_multiquery", NiahSpec("essay", "words", "numbers", num_queries=4)),
]
