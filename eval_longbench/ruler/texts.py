"""Built-in text for the RULER tasks: key words, a word pool for aggregation, and an essay haystack.

RULER draws keys from wonderwords' adjective and noun lists and its essay haystack from Paul Graham's
essays, both downloads. These are our own short lists and prose, so everything runs offline; pass
``--haystack FILES`` to use your own essays instead (RULER's exact haystack, if you have it).
"""

from __future__ import annotations

import itertools
import random

ADJECTIVES = tuple("""
able acid amber ancient angry bold brave brief bright broad calm careful cheap chief clean clever cold
cool crisp curly dark deep dense dry dull eager early easy empty equal exact faint fair false fancy fast
fierce final fine firm flat fluffy fresh friendly full gentle giant glad golden grand great green gray
happy hard heavy hidden high hollow huge humble icy jolly keen kind large late lazy lean light little
lively long loud lucky mellow merry mighty mild modern narrow neat new nice noble odd old orange pale
plain polite proud purple quick quiet rapid rare raw real red rich rough round royal rusty sad salty
sharp shiny short silent silver simple slow small smooth soft solid sour spicy steady steep sticky stiff
still strong sunny sweet swift tall tame tender thick thin tidy tiny tough vast warm weak wide wild wise
witty wooden young zesty
""".split())

NOUNS = tuple("""
anchor apple arch arrow badge bakery balloon banana barrel basket beacon bell bench bicycle blanket boat
bottle branch bread bridge brook bucket button cabin cactus camera candle canyon carpet castle cellar
chair cherry chimney circle cliff clock cloud coast coffee comet compass copper corner cottage crayon
crown crystal curtain desert diamond dolphin dragon drum eagle engine falcon feather fence field flag
flute forest fountain garden gate glacier globe guitar hammer harbor helmet hill island jacket jungle
kettle kite ladder lagoon lamp lantern lemon library lighthouse lion magnet maple meadow mirror monkey
mountain needle ocean orchard otter palace panda parrot pebble pencil piano pillow planet pocket pond
puzzle quartz rabbit radio raven ribbon river rocket saddle sailor sandal shadow shell ship shovel
signal spoon squirrel stable statue stone storm summit temple thunder tiger tower tractor trumpet tunnel
valley violin wagon walnut whale window wizard
""".split())

VERBS = tuple("""
accept arrive bake borrow build carry chase climb collect cook count cover dance deliver dig drift
explore fetch fold gather guide hammer hunt invent jump knit launch lift listen mend mix notice obey
offer paint pluck polish pour print pull push repair return ride roam sail scatter search sew shake
shine sketch skate slide sort splash stack steer stir swim tease travel tumble wander wash weave whistle
""".split())


def key_words() -> list[str]:
    """RULER-style keys ``adjective-noun`` (about 20 000), sorted so a seeded choice is reproducible."""
    return sorted(f"{a}-{n}" for a, n in itertools.product(ADJECTIVES, NOUNS))


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def word_pool(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct lowercase words in seeded order: the real words first, then made-up ones.

    RULER's common-word task needs thousands of distinct words at long lengths (its fallback is a big
    English list); past our few hundred real words, three-syllable made-up words (``bakemo``) fill in.
    """
    real = sorted(set(ADJECTIVES) | set(NOUNS) | set(VERBS))
    rng.shuffle(real)
    if n <= len(real):
        return real[:n]
    out, seen = real, set(real)
    while len(out) < n:
        w = "".join(rng.choice(_SYLLABLES) for _ in range(3))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


ESSAY = """\
Most of the tools we rely on were not designed so much as accumulated. Someone needed to cut a board,
so they sharpened a stone, and a thousand years later we have a saw that nobody alive could have
invented from scratch. This is worth remembering whenever a new tool looks obviously right. The obvious
version is usually the tenth version, and the nine before it taught its makers what to leave out.

When people start a project, they tend to overestimate how much they know about the problem. The first
week feels like progress because every question has an easy answer. The second month feels like a swamp
because the easy answers turned out to contradict each other. The projects that survive are the ones
whose makers kept a list of what surprised them and went back to it.

A good test of whether you understand something is whether you can predict what will break. Anyone can
describe a machine that works. Fewer people can tell you which bolt will loosen first, or which number
will drift when the room gets warm. That kind of knowledge comes from watching things fail, patiently,
and writing down the order in which they failed.

Cities are an interesting example. No one designs a city, yet cities work surprisingly well. Streets
appear where people walk, shops appear where streets cross, and parks survive where someone fought to
keep them. The planners who do best are the ones who notice what people already do and make it easier,
rather than the ones who draw a perfect map and expect people to follow it.

The same is true of writing. The first draft of an essay is a map of what you thought you believed. The
second draft is a map of what you actually believe, which is usually different and more interesting.
If the second draft is not different from the first, you probably did not learn anything while writing,
and the reader will notice that before you do.

Teachers know that the hardest part of learning is not acquiring facts but noticing which facts matter.
A student who memorizes every date in a history book may still miss the one decision that explains the
rest. A student who reads less but asks why each event happened will often understand more. Curiosity
is a better filter than diligence, although the best students have both.

There is a kind of patience that looks like laziness from the outside. A gardener who waits a season
before moving a tree is not idle; she is watching where the light falls and where the water pools. The
impatient gardener moves the tree in the first week and then moves it again. Both end up with a tree in
the right place, but only one of them has learned anything about the garden.

Small teams often outperform large ones for a simple reason. In a small team everyone can see the whole
problem, so nobody optimizes a piece at the expense of the rest. In a large team each person sees only
their corner, and the corners do not always fit together. Much of management is the work of helping
people see past their own corner without drowning them in everyone else's.

Good measurements are rarer than they should be. It is easy to measure what is convenient and then
pretend it is what matters. A bakery that counts loaves sold will learn something, but a bakery that
counts loaves thrown away at closing time will learn more. The second number is less flattering, which
is exactly why it is more useful.

Finally, it helps to remember that most problems are smaller than they look from the inside. When you
are stuck, the problem fills the whole room. A week later, or explained to a friend, it often shrinks to
a single missing step. The trick is to find that step sooner, and the best way anyone has found is to
write the problem down plainly, as if for a stranger, and read it back slowly.
"""
