"""RULER's variable tracking (multi-hop tracing): follow ``VAR B = VAR A`` chains back to a value.

Each chain starts ``VAR ABCDE = 12345`` and hops ``num_hops`` times (``VAR FGHIJ = VAR ABCDE``); its
statements go into the noise haystack in order, at seeded token depths. The question gives the value;
the answer is every variable of the chain that holds it (``num_hops + 1`` names). With several chains
(``num_chains``) the others are distractors with their own values. RULER adds one worked example in
front for some models; we do not (every token of a short window goes to the haystack).
"""

from __future__ import annotations

import functools
import string

from eval_longbench.haystack import Needle, filler_stream
from eval_longbench.ruler.base import DEPTHS, GenContext, RulerTask, Sample, fit_haystack, task_rng

INTRO = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n"
QUESTION = ("Question: Find all variables that are assigned the value {value} in the text above."
            " Answer: According to the chain(s) of variable assignment in the text above, {n} variables"
            " are assigned the value {value}, they are: ")


def make_chains(rng, num_chains: int, num_hops: int) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """``(variables, statements, values)`` per chain: distinct 5-letter names, distinct 5-digit values."""
    names: list[str] = []
    while len(names) < num_chains * (num_hops + 1):
        v = "".join(rng.choices(string.ascii_uppercase, k=5))
        if v not in names:
            names.append(v)
    values = rng.sample(range(10000, 100000), num_chains)
    chains, statements = [], []
    for c in range(num_chains):
        vs = names[c * (num_hops + 1):(c + 1) * (num_hops + 1)]
        chains.append(vs)
        statements.append([f"VAR {vs[0]} = {values[c]}."] + [f"VAR {vs[j + 1]} = VAR {vs[j]}." for j in range(num_hops)])
    return chains, statements, [str(v) for v in values]


def make_vt(num_chains: int, num_hops: int, name: str, ctx: GenContext, length: int, budget: int, seed: int) -> Sample:
    rng = task_rng(name, seed)
    chains, statements, values = make_chains(rng, num_chains, num_hops)
    flat = [(c, s) for c, chain in enumerate(statements) for s in chain]
    depths = sorted(rng.sample(DEPTHS, len(flat)))
    # Interleave chains but keep each chain's own order: statement j of a chain never precedes j-1.
    order = sorted(range(len(flat)), key=lambda i: (statements[flat[i][0]].index(flat[i][1]), rng.random()))
    needles = [Needle(flat[i][1], d) for i, d in zip(order, depths)]
    question = QUESTION.format(value=values[0], n=num_hops + 1)
    prompt, info = fit_haystack(ctx, budget, needles, intro=INTRO, question=question,
                                sentences=lambda: filler_stream(None, seed))
    return Sample(prompt, chains[0], info["n_tokens"],
                  {"value": values[0], "depths": depths, "needle_depths": info["needle_depths"]})


TASKS = [
    RulerTask("vt", "vt", functools.partial(make_vt, 1, 4, "vt"), metric="all", max_new_tokens=30,
              params={"num_chains": 1, "num_hops": 4, "haystack": "noise"}),
]
