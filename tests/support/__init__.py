"""Helpers shared by the tests (never imported by the product): ``support.train_ranks`` (synthetic packs,
trainer configs, rank functions), ``support.dist_fns`` (small rank functions), ``support.ring_ranks`` /
``support.ulysses_ranks`` (the multi-rank attention suites), ``support.chat_server`` (a loopback
OpenAI-compatible server), ``support.train_faults`` (finished runs to damage), ``support.scripts`` (load a
benchmarks/ or scripts/ file), ``support.toy_module``, ``support.bpe``, ``support.stalling_node``, ``support.sword`` (a small SWORD
Bible module).

Imported as ``support.<module>`` with ``tests/`` on ``sys.path`` (tests/conftest.py puts it there; spawned
ranks inherit it, subprocesses get it in ``PYTHONPATH`` or ``sys.path``): rank functions pickle by that name.
"""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent  # the checkout: README.md, docs/, configs/, longctx/ ...
SHARED = ROOT.parent / "shared"
ORGANISM = ROOT / "longctx" / "assets" / "organism"  # the shipped tiny passkey model
