"""benchmarks/recipe_compare.py without training: the per-method variants of the shipped recipes are valid recipes."""

from __future__ import annotations

import pytest
import yaml

from support.scripts import load_script
from longctx.recipe.spec import parse_recipe


@pytest.fixture(scope="module")
def compare():
    return load_script("benchmarks/recipe_compare.py", "recipe_compare")


@pytest.mark.parametrize("schedule", ["two-stage", "one-stage"])
def test_the_recipes_own_method_is_the_shipped_recipe_unchanged(compare, schedule):
    """The YaRN cell runs the shipped file as is (so a finished run of it is reused, not retrained)."""
    raw = yaml.safe_load(compare.SCHEDULES[schedule].read_text())
    assert compare.variant(raw, "yarn") == raw


@pytest.mark.parametrize("schedule", ["two-stage", "one-stage"])
def test_pi_and_abf_variants_reach_the_same_contexts_as_the_shipped_recipe(compare, schedule):
    """Every variant validates and each stage ends at the shipped stage's context; ABF raises rope_theta instead."""
    raw = yaml.safe_load(compare.SCHEDULES[schedule].read_text())
    shipped = [s.context for s in parse_recipe(raw, "shipped.yaml").stages]
    for method in ("linear", "abf"):
        r = parse_recipe(compare.variant(raw, method), f"{method}.yaml")
        assert [s.method for s in r.stages] == [method] * len(shipped)
        assert [s.context for s in r.stages] == shipped
    thetas = [s.params["rope_theta"] for s in parse_recipe(compare.variant(raw, "abf"), "abf.yaml").stages]
    assert all(t > 10000.0 for t in thetas) and thetas == sorted(thetas)
