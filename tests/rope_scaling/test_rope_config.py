"""rope_scaling.checkpoint_config reads config.json's RoPE exactly as transformers resolves it.

Each case builds a config.json, loads it with ``AutoConfig.from_pretrained`` (transformers itself is
the oracle) and compares our reading with it; keys that contradict what transformers loads are
reported by `longctx inspect` and refused by `longctx extend`.
"""

import json
import shutil

import pytest
from transformers import AutoConfig

from longctx.core.errors import LongctxError
from rope_scaling import extend_checkpoint
from rope_scaling.checkpoint_config import read_config, read_rope_config
from rope_scaling.inspect_ckpt import format_report, inspect_checkpoint

YARN = {"rope_type": "yarn", "factor": 2.0, "rope_theta": 10000.0, "original_max_position_embeddings": 256}
CASES = {
    # the case: transformers loads the legacy linear x4, theta 5e5
    "rope_parameters + contradicting rope_scaling + rope_theta": dict(
        rope_parameters=YARN, rope_scaling={"type": "linear", "factor": 4.0}, rope_theta=5e5),
    "rope_parameters + contradicting rope_scaling": dict(
        rope_parameters=YARN, rope_scaling={"rope_type": "dynamic", "factor": 3.0}),
    "rope_parameters + contradicting top-level rope_theta": dict(rope_parameters=YARN, rope_theta=5e5),
    "rope_parameters without theta + top-level rope_theta": dict(
        rope_parameters={"rope_type": "linear", "factor": 2.0}, rope_theta=5e5),
    "legacy only": dict(rope_scaling={"type": "linear", "factor": 4.0}, rope_theta=5e5),
    "v5 only": dict(rope_parameters=YARN),
    "rope_scaling null + rope_parameters": dict(rope_parameters=YARN, rope_scaling=None),
    "identical rope_scaling and rope_parameters": dict(rope_parameters=YARN, rope_scaling=dict(YARN)),
}
CONFLICTING = {"rope_parameters + contradicting rope_scaling + rope_theta": ("rope_scaling", "rope_parameters"),
               "rope_parameters + contradicting rope_scaling": ("rope_scaling", "rope_parameters"),
               "rope_parameters + contradicting top-level rope_theta": ("rope_theta", "rope_parameters.rope_theta")}


def _with_rope(src, dst, rope_keys):
    """A copy of checkpoint ``src`` at ``dst`` whose config.json carries exactly ``rope_keys``."""
    shutil.copytree(src, dst)
    raw = json.loads((dst / "config.json").read_text())
    for k in ("rope_parameters", "rope_scaling", "rope_theta"):
        raw.pop(k, None)
    raw.update(json.loads(json.dumps(rope_keys)))
    (dst / "config.json").write_text(json.dumps(raw, indent=2))
    return dst


@pytest.mark.parametrize("case", list(CASES))
def test_our_reading_of_the_rope_keys_equals_what_transformers_loads(tiny_llama, tmp_path, case):
    """rope_type, rope_theta and every other parameter equal AutoConfig's rope_parameters (the old reader
    preferred rope_parameters over rope_scaling: the opposite of transformers)."""
    d = _with_rope(tiny_llama, tmp_path / "m", CASES[case])
    loaded = dict(AutoConfig.from_pretrained(d).rope_parameters)
    rc = read_rope_config(*read_config(d))
    loaded.pop("type", None)
    assert (rc.rope_type, rc.rope_theta) == (loaded.pop("rope_type"), loaded.pop("rope_theta"))
    assert rc.partial_rotary_factor == loaded.pop("partial_rotary_factor", 1.0)
    if "original_max_position_embeddings" in loaded:
        assert rc.original_length == loaded.pop("original_max_position_embeddings")
    assert rc.params == loaded
    assert bool(rc.conflicts) == (case in CONFLICTING)


@pytest.mark.parametrize("case", list(CONFLICTING))
def test_inspect_reports_what_transformers_loads_and_warns_naming_both_keys(tiny_llama, tmp_path, case):
    """`longctx inspect` shows transformers' reading and one warning line naming both contradicting keys."""
    d = _with_rope(tiny_llama, tmp_path / "m", CASES[case])
    info = inspect_checkpoint(d)
    loaded = AutoConfig.from_pretrained(d).rope_parameters
    assert info["rope_parameters"]["rope_type"] == loaded["rope_type"]
    assert info["rope_parameters"]["rope_theta"] == loaded["rope_theta"]
    (warning,) = info["config_conflicts"]
    assert all(key in warning for key in CONFLICTING[case]) and "\n" not in warning
    assert any(line.startswith("WARNING") and line.endswith(warning) for line in format_report(info).splitlines())


@pytest.mark.parametrize("case", list(CONFLICTING))
def test_inspect_json_also_warns_on_stderr_naming_both_keys(tiny_llama, tmp_path, case, capsys):
    from longctx.cli import main

    d = _with_rope(tiny_llama, tmp_path / "m", CASES[case])
    assert main(["inspect", str(d), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["config_conflicts"]
    (line,) = err.strip().splitlines()
    assert line.startswith("longctx inspect: warning: ") and all(key in line for key in CONFLICTING[case])


@pytest.mark.parametrize("case", list(CONFLICTING))
def test_extend_refuses_a_config_that_contradicts_itself_naming_both_keys(tiny_llama, tmp_path, case):
    """`longctx extend` used to build on rope_parameters and drop the legacy keys transformers had loaded;
    now it refuses (one line naming both keys) and writes nothing."""
    d = _with_rope(tiny_llama, tmp_path / "m", CASES[case])
    with pytest.raises(LongctxError) as err:
        extend_checkpoint(d, tmp_path / "out", method="yarn", factor=2)
    first, second = CONFLICTING[case]
    assert f"config.json: {first} " in str(err.value) and second in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_extend_builds_on_identical_rope_scaling_and_rope_parameters(tiny_llama, tmp_path):
    """Both keys saying the same thing is no contradiction: extend proceeds and writes v5 keys only."""
    d = _with_rope(tiny_llama, tmp_path / "m", CASES["identical rope_scaling and rope_parameters"])
    extend_checkpoint(d, tmp_path / "out", method="yarn", factor=2)
    raw = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "rope_scaling" not in raw and raw["rope_parameters"]["rope_type"] == "yarn"
