"""The README and docs/ hold together: every relative link points at a file that exists (and at a heading
that exists, when it names one), and every test the docs cite as ``test_file.py::test_name`` exists.

Links are Markdown's ``[text](target)``; ``http(s)://`` and ``mailto:`` targets are not followed (no network).
A ``#anchor`` is checked against the target's headings as GitHub renders them (lowercased, punctuation
dropped, spaces to hyphens, ``-1``, ``-2`` … for repeats). Cited tests are looked up anywhere under
``tests/``, so a test file moved into a subfolder still counts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
CITED_TEST = re.compile(r"\b(test_\w+\.py)::(test_\w+)")
CITED_FILE = re.compile(r"\b(test_\w+\.py)\b")
PLACEHOLDER = "test_file.py"  # how the docs spell "a test file" when they explain the citation format


def _prose(text: str) -> str:
    """The page without its fenced code blocks and inline code (a ``[x](y)`` there is not a link)."""
    lines, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(lines)


def github_anchors(text: str) -> set[str]:
    """The ``#anchor`` of every heading of a Markdown page, as GitHub makes them."""
    anchors, seen, inside = set(), {}, False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        m = None if inside else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def links_in(text: str) -> list[str]:
    return [a or b for a, b in LINK.findall(_prose(text))]


def test_the_anchor_rule_matches_github():
    text = "# Evaluate what you serve: `--endpoint URL --served-model NAME`\n## Results\n## Results\n```\n# not a heading\n```\n"
    assert github_anchors(text) == {"evaluate-what-you-serve---endpoint-url---served-model-name", "results", "results-1"}
    assert links_in("see [a](b.md#c) and `[x](y)` and ![img](p.png)") == ["b.md#c", "p.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(page):
    broken = []
    for target in links_in(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in github_anchors(file.read_text()):
            broken.append(f"{target}: {file.relative_to(ROOT)} has no heading with the anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def _test_files() -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        files.setdefault(path.name, []).append(path)
    return files


def test_every_test_file_the_docs_cite_exists():
    """Each ``test_file.py`` README or docs/ names is a file somewhere under tests/."""
    files = _test_files()
    missing = sorted({f"{page.relative_to(ROOT)}: {name}" for page in PAGES
                      for name in CITED_FILE.findall(page.read_text()) if name not in files and name != PLACEHOLDER})
    assert not missing, "cited test files that do not exist:\n" + "\n".join(missing)


def test_every_test_the_docs_cite_exists():
    """``test_file.py::test_name`` in README or docs/ names a test function that is defined in that file."""
    files = _test_files()
    missing = []
    for page in PAGES:
        for name, test in CITED_TEST.findall(page.read_text()):
            if name == PLACEHOLDER:
                continue
            sources = [p.read_text() for p in files.get(name, [])]
            if not any(re.search(rf"^\s*(async\s+)?def {test}\(", s, re.MULTILINE) for s in sources):
                missing.append(f"{page.relative_to(ROOT)}: {name}::{test}")
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)
