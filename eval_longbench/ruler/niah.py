"""RULER's needle-in-a-haystack family: single, multi-key, multi-value and multi-query retrieval.

Follows NVIDIA/RULER ``scripts/data/synthetic/niah.py`` with the template and answer prefix of its
``constants.py``. Needles read ``One of the special magic {numbers} for {key} is: {value}.``; keys are
wonderwords ``adjective-noun`` pairs, 7-digit numbers or UUIDs; the needle list is shuffled. Haystacks:

- ``noise``: RULER's noise block, one per line; the needles go in as lines at indexes drawn per sample
  (``random.sample(range(lines), needles)``, inserted from the last index down);
- ``needle``: lines that are themselves needles with other keys (the hardest distractors), the same way;
- ``essay``: the essay's first words, needles between sentences at depths drawn from RULER's 40 (see
  :mod:`eval_longbench.ruler.haystacks`).

The question asks some keys; the answer is every value of them; the score is the fraction found.
"""

from __future__ import annotations

import functools
import random
import uuid
from dataclasses import dataclass

from eval_longbench.ruler.base import DEPTHS, DoesNotFit, GenContext, RulerTask, Sample, fit_exact, join_list, task_rng
from eval_longbench.ruler.haystacks import LineSource, essay_context, essay_text, fit_lines, insert_lines
from eval_longbench.ruler.texts import NOISE, default_haystack, key_word

NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
TEMPLATE = ("Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
            "I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
            "{type_needle_v} for {query} mentioned in the provided text?")
ANSWER_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are"


@dataclass(frozen=True)
class NiahSpec:
    haystack: str  # noise | essay | needle
    key_type: str  # words | numbers | uuids
    value_type: str
    num_keys: int = 1
    num_values: int = 1
    num_queries: int = 1


def random_value(kind: str, rng: random.Random) -> str:
    """A 7-digit number, an ``adjective-noun`` key or a UUID4, as RULER draws them."""
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "words":
        return key_word(rng)
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise ValueError(f"unknown needle type {kind!r}")


def _fresh(kind: str, rng: random.Random, used: set[str]) -> str:
    """A value not drawn before in this sample (RULER does not check; a repeat would make two answers)."""
    while True:
        v = random_value(kind, rng)
        if v not in used:
            used.add(v)
            return v


def singular(text: str) -> str:
    """RULER's rewrite when one value is asked (``A special magic number is hidden ...``)."""
    return text.replace("Some", "A").replace("are all", "is").replace("are", "is").replace("answers", "answer")


def _texts(spec: NiahSpec) -> tuple[str, str, str]:
    """Template, answer prefix and the value type as they read: singular when one value is asked."""
    if spec.num_queries * spec.num_values == 1:
        return singular(TEMPLATE), singular(ANSWER_PREFIX), spec.value_type[:-1]
    return TEMPLATE, ANSWER_PREFIX, spec.value_type


def make_niah(spec: NiahSpec, name: str, ctx: GenContext, length: int, budget: int, seed: int) -> Sample:
    rng = task_rng(name, seed)
    used: set[str] = set()
    keys, values, needles = [], [], []
    for _ in range(max(spec.num_keys, spec.num_queries)):
        keys.append(_fresh(spec.key_type, rng, used))
        values.append([_fresh(spec.value_type, rng, used) for _ in range(spec.num_values)])
        needles += [NEEDLE.format(type_needle_v=spec.value_type, key=keys[-1], value=v) for v in values[-1]]
    rng.shuffle(needles)
    asked = rng.sample(range(len(keys)), spec.num_queries)
    queries = [keys[i] for i in asked]
    template, prefix, type_v = _texts(spec)
    fill = {"type_needle_v": type_v, "query": join_list(queries)}

    def render(context: str) -> str:
        return ctx.render(template.format(context=context, **fill), prefix.format(**fill))

    info: dict = {"needles": needles, "keys": queries}
    if spec.haystack == "essay":
        hay = ctx.essay or default_haystack()
        depths = rng.sample(DEPTHS, len(needles))
        prompt, chars, tokens = fit_exact(ctx, budget, lambda c: render(essay_context(essay_text(hay.joined, c)[0],
                                                                                      needles, depths)), guess=4 * budget)
        info.update(depths=depths, haystack_chars=chars, haystack_repeats=round(essay_text(hay.joined, chars)[1], 2))
    else:
        if spec.haystack == "noise":
            line = lambda i: NOISE
        else:
            taken = set(used)
            line = LineSource(lambda r: NEEDLE.format(type_needle_v=spec.value_type, key=_fresh(spec.key_type, r, taken),
                                                      value=_fresh(spec.value_type, r, taken)),
                              random.Random(f"ruler:{name}:{seed}:haystack"))

        def draw(n_lines: int) -> list[int]:
            if n_lines < len(needles):
                raise DoesNotFit(f"{budget} tokens leave {n_lines} haystack lines for {len(needles)} needles")
            return sorted(rng.sample(range(n_lines), len(needles)), reverse=True)

        prompt, tokens, at, fragment, n_lines = fit_lines(
            ctx, budget, line, lambda lines, at: insert_lines(lines, needles, [0] * len(needles) if at is None else at), draw, render)
        info.update(insert_at=at, lines=n_lines, fragment=fragment)
    return Sample(prompt, [v for i in asked for v in values[i]], tokens, info)


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
