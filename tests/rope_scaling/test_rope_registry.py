"""The method declarations: what the registry promises to everything that reads it.

A method is one :class:`RopeMethod` (function, parameters, ``prepare`` hook) plus one registry line;
the planner, ``longctx extend``'s flags and their checks are generated from it. The toy method below
is registered only inside the tests that use it, to prove that nothing else needs editing.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import replace

import pytest
import torch

from longctx.cli import main as longctx_main
from longctx.core.errors import LongctxError
from rope_scaling.basic import linear_rope
from rope_scaling.checkpoint_config import read_config
from longctx.cli.extend import _extend_parser
from rope_scaling.common import default_inv_freq
from rope_scaling.extend import extend_checkpoint, plan_extension
from rope_scaling.flags import method_flags
from rope_scaling.method import Param, Prepared, Request, RopeMethod
from rope_scaling.registry import METHODS


def toy_rope(*, base: float, head_dim: int, factor: float, partial_rotary_factor: float = 1.0, tilt: float = 1.0,
             **_: object):
    """Position interpolation with every frequency further divided by ``tilt``."""
    inv_freq, _ = linear_rope(base=base, head_dim=head_dim, factor=factor, partial_rotary_factor=partial_rotary_factor)
    return inv_freq / tilt, 1.0


def prepare_toy(req: Request) -> Prepared:
    prepared = Prepared.unchanged(req)
    return replace(prepared, params={"tilt": 2.0, **prepared.params}).with_note("toy: tilt defaults to 2 here")


TOY = RopeMethod("toy", toy_rope, "linear", "toy: linear with an extra tilt", "needed", prepare=prepare_toy,
                 params=(Param("tilt", float, "extra divisor of every frequency", default=1.0, minimum=1.0,
                               inclusive=True),))


@pytest.fixture
def toy(monkeypatch):
    """The toy method, registered for one test (one registry line, as a real method would be)."""
    monkeypatch.setitem(METHODS, "toy", TOY)
    return TOY


def test_declared_defaults_equal_the_function_defaults():
    """A Param's default is what its function uses when the keyword is absent, so --help tells the truth."""
    for name, method in METHODS.items():
        signature = inspect.signature(method.fn).parameters
        for p in method.params:
            if p.default is not None and p.name in signature:
                assert signature[p.name].default == p.default, (name, p.name)


def test_shared_parameters_are_declared_alike():
    """attention_factor is declared by yarn and longrope; the generated flag is one, naming both."""
    shared = {f.param.name: f.methods for f in method_flags() if len(f.methods) > 1}
    assert shared == {"attention_factor": ("yarn", "longrope")}


def test_conflicting_declarations_are_refused(monkeypatch):
    """Two methods declaring one name with different ranges cannot share a flag: an error, not a silent pick."""
    clash = replace(TOY, name="clash", params=(Param("beta_fast", float, "x", minimum=5.0),))
    monkeypatch.setitem(METHODS, "clash", clash)
    with pytest.raises(ValueError, match="beta_fast"):
        method_flags()


def test_every_declared_parameter_has_a_flag():
    """Each declared parameter is a flag of `longctx extend`, its help naming the default."""
    parser = _extend_parser()
    help_text = parser.format_help()
    for method in METHODS.values():
        for p in method.params:
            assert p.flag in parser._option_string_actions, p.flag
    assert "--no-truncate" in help_text and "default: 32" in help_text


def test_a_registered_toy_method_gets_a_flag(toy):
    """Registering a method is enough for `--method toy` and its `--tilt` flag to exist."""
    parser = _extend_parser()
    assert "--tilt" in parser._option_string_actions
    assert "toy" in parser._option_string_actions["--method"].choices
    assert "--method toy" in parser.format_help()


def test_a_registered_toy_method_plans_through_its_prepare_hook(toy, tiny_llama):
    """plan_extension runs the toy's prepare (tilt 2, a note) and function, and writes its parameter."""
    raw, path = read_config(tiny_llama)
    plan = plan_extension(raw, path, method="toy", factor=4)
    assert plan.rope_parameters == {"rope_type": "linear", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
                                    "original_max_position_embeddings": 256, "factor": 4, "tilt": 2.0}
    assert torch.equal(plan.new_inv_freq, default_inv_freq(1e4, 16) / 4 / 2.0)
    assert plan.notes == ["toy: tilt defaults to 2 here"]


def test_a_registered_toy_method_extends_a_checkpoint(toy, tiny_llama, tmp_path):
    """extend_checkpoint writes the toy's rope_parameters, the user's tilt winning over prepare's default."""
    extend_checkpoint(tiny_llama, tmp_path / "toy", method="toy", target_length=1024, tilt=3.0)
    written = json.loads((tmp_path / "toy" / "config.json").read_text())
    assert written["rope_parameters"]["tilt"] == 3.0 and written["max_position_embeddings"] == 1024


def test_a_registered_toy_method_validates_its_flag(toy, tiny_llama, tmp_path, capsys):
    """--tilt below its declared minimum is a one-line error naming the flag; nothing is written."""
    code = longctx_main(["extend", str(tiny_llama), "--method", "toy", "--factor", "4", "--tilt", "0.5",
                         "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--tilt" in err and not (tmp_path / "o").exists()


def test_out_of_range_library_value_names_the_key(tiny_llama):
    """plan_extension refuses NaN the same way the CLI does, naming the parameter key."""
    raw, path = read_config(tiny_llama)
    with pytest.raises(LongctxError, match=r"^mscale: .*nan"):
        plan_extension(raw, path, method="yarn", factor=4, mscale=float("nan"))


def test_a_parameter_of_another_method_names_the_methods_that_take_it(tiny_llama):
    """--low-freq-factor with --method yarn: the error says llama3 takes it."""
    raw, path = read_config(tiny_llama)
    with pytest.raises(LongctxError, match=r"--low-freq-factor only applies to --method llama3"):
        plan_extension(raw, path, method="yarn", factor=4, low_freq_factor=2.0)


def test_auto_picks_the_only_method_taking_a_given_parameter(tiny_llama):
    """--method auto with a llama3-only flag plans llama3 (as --rope-theta plans abf), and says why."""
    raw, path = read_config(tiny_llama)
    plan = plan_extension(raw, path, method="auto", factor=4, low_freq_factor=2.0)
    assert plan.method == "llama3" and plan.reason.startswith("--low-freq-factor given")
