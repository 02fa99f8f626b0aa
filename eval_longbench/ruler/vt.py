"""RULER's variable tracking (multi-hop tracing): follow ``VAR B = VAR A`` chains back to a value.

Follows NVIDIA/RULER ``scripts/data/synthetic/variable_tracking.py`` (noise haystack) with the template
and answer prefix of its ``constants.py``. A chain is ``VAR ABCDE = 12345`` then ``num_hops`` hops
``VAR FGHIJ = VAR ABCDE `` (RULER's trailing space kept), each statement a line of the noise haystack
(RULER's noise block, one per line); each chain's statements go in, in order, at line indexes drawn per
sample. The question gives the value; the answer is every variable of the chain (``num_hops + 1``
names); other chains (``num_chains``) are distractors.

One worked example comes first, inside the user turn, as RULER's: the same task with 3-letter names on
as many noise lines as keep it within 500 tokens (at least 5), followed by its answer. It counts
against the length like the rest of the prompt.
"""

from __future__ import annotations

import functools
import random
import string

from eval_longbench.ruler.base import DoesNotFit, GenContext, RulerTask, Sample, task_rng
from eval_longbench.ruler.haystacks import fit_lines
from eval_longbench.ruler.texts import NOISE

TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
            "Question: Find all variables that are assigned the value {query} in the text above.")
ANSWER_PREFIX = (" Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables "
                 "are assigned the value {query}, they are: ")
EXAMPLE_TOKENS = 500
"""RULER sizes its example as a task of ``max_seq_length=500`` (template and answer prefix counted)."""
EXAMPLE_MIN_LINES = 5
"""RULER's example has at least its search's lower bound of noise lines (``incremental = 5``)."""


def make_chains(rng: random.Random, num_chains: int, num_hops: int, letters: int = 5
                ) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """``(variables, statements, values)`` per chain: distinct ``letters``-letter names, 5-digit values
    (``np.random.randint(10000, 99999)``)."""
    names: list[str] = []
    while len(names) < num_chains * (num_hops + 1):
        v = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if v not in names:
            names.append(v)
    variables, statements, values = [], [], []
    for c in range(num_chains):
        vs = names[c * (num_hops + 1):(c + 1) * (num_hops + 1)]
        values.append(str(rng.randint(10000, 99998)))
        variables.append(vs)
        statements.append([f"VAR {vs[0]} = {values[-1]}"] + [f"VAR {vs[j + 1]} = VAR {vs[j]} " for j in range(num_hops)])
    return variables, statements, values


def draw_positions(rng: random.Random, n_lines: int, chains: list[list[str]]) -> list[list[int]]:
    """RULER's draw: per chain, sorted line indexes from the list as it stands (earlier chains inserted)."""
    plan, size = [], n_lines
    for chain in chains:
        if size < len(chain):
            raise DoesNotFit(f"{size} haystack lines cannot take a chain of {len(chain)} statements")
        plan.append(sorted(rng.sample(range(size), len(chain))))
        size += len(chain)
    return plan


def insert_chains(lines: list[str], chains: list[list[str]], plan: list[list[int]] | None) -> list[str]:
    """RULER's insertion: statement ``j`` of a chain at its index ``+ j`` (``None``: every chain at the front)."""
    out = list(lines)
    for chain, positions in zip(chains, plan or [[0] * len(c) for c in chains]):
        for j, (p, statement) in enumerate(zip(positions, chain)):
            out.insert(p + j, statement)
    return out


def task_text(context: str, value: str, num_v: int) -> tuple[str, str]:
    """The user text and the answer prefix of one chain question."""
    return TEMPLATE.format(context=context, query=value), ANSWER_PREFIX.format(num_v=num_v, query=value)


def example(ctx: GenContext, rng: random.Random, num_chains: int, num_hops: int) -> str:
    """RULER's one-shot example (``randomize_icl``'s output): a whole 3-letter task, its answer prefix,
    then the answer; ends with a newline (the prompt adds one more before the task)."""
    variables, chains, values = make_chains(rng, num_chains, min(10, num_hops), letters=3)

    def text(n_lines: int, plan) -> str:
        user, prefix = task_text("\n".join(insert_chains([NOISE] * n_lines, chains, plan)), values[0], num_hops + 1)
        return user + prefix

    n = EXAMPLE_MIN_LINES
    while ctx.raw(text(n + 1, None)) <= EXAMPLE_TOKENS:
        n += 1
    return text(n, draw_positions(rng, n, chains)) + " " + " ".join(variables[0]) + "\n"


def make_vt(num_chains: int, num_hops: int, name: str, ctx: GenContext, length: int, budget: int, seed: int) -> Sample:
    rng = task_rng(name, seed)
    shot = example(ctx, rng, num_chains, num_hops)
    variables, chains, values = make_chains(rng, num_chains, num_hops)

    def render(context: str) -> str:
        user, prefix = task_text(context, values[0], num_hops + 1)
        return ctx.render(shot + "\n" + user, prefix)

    prompt, tokens, plan, fragment, n_lines = fit_lines(
        ctx, budget, lambda i: NOISE, lambda lines, plan: insert_chains(lines, chains, plan),
        lambda n: draw_positions(rng, n, chains), render)
    return Sample(prompt, variables[0], tokens, {"value": values[0], "chains": chains, "insert_at": plan,
                                                 "lines": n_lines, "fragment": fragment})


TASKS = [
    RulerTask("vt", "vt", functools.partial(make_vt, 1, 4, "vt"), metric="all", max_new_tokens=30,
              params={"num_chains": 1, "num_hops": 4, "haystack": "noise"}),
]
