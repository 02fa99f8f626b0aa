"""``extend_checkpoint`` / ``longctx extend``: files, atomicity, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from longctx.cli import main as longctx_main
from longctx.core.errors import LongctxError
from longctx.core.io import OUTPUT_MARKER
from rope_scaling.base_selection import critical_base, lower_bound_base
from rope_scaling.checkpoint_config import read_config, read_rope_config
from rope_scaling.extend import extend_checkpoint, plan_extension


def _raw(tiny):
    return read_config(tiny)


def test_weights_are_hard_linked_and_other_files_copied(tiny_llama, tmp_path):
    """The safetensors file is the same inode (or identical bytes); tokenizer files are carried over."""
    out = tmp_path / "ext"
    extend_checkpoint(tiny_llama, out, method="yarn", target_length=1024)
    a, b = tiny_llama / "model.safetensors", out / "model.safetensors"
    assert os.stat(a).st_ino == os.stat(b).st_ino or a.read_bytes() == b.read_bytes()
    for name in os.listdir(tiny_llama):
        if name not in ("config.json", OUTPUT_MARKER):  # the marker names the command that wrote the folder
            assert (out / name).read_bytes() == (tiny_llama / name).read_bytes(), name


def test_yarn_config_always_carries_the_original_length(tiny_llama):
    """The written yarn dict has original_max_position_embeddings = trained length and factor = target / trained."""
    raw, path = _raw(tiny_llama)
    rp = plan_extension(raw, path, method="yarn", target_length=2048).rope_parameters
    assert rp["rope_type"] == "yarn" and rp["original_max_position_embeddings"] == 256 and rp["factor"] == 8


def test_existing_output_needs_overwrite(tiny_llama, tmp_path):
    """A second run onto the same folder fails without --overwrite and succeeds with it."""
    out = tmp_path / "ext"
    extend_checkpoint(tiny_llama, out, method="linear", factor=2)
    with pytest.raises(LongctxError, match="already exists"):
        extend_checkpoint(tiny_llama, out, method="yarn", factor=4)
    extend_checkpoint(tiny_llama, out, method="yarn", factor=4, overwrite=True)
    assert json.loads((out / "config.json").read_text())["rope_parameters"]["rope_type"] == "yarn"


def test_failed_write_leaves_no_output(tiny_llama, tmp_path, monkeypatch):
    """If writing fails half-way, the output folder does not appear (and no temp folder is left)."""
    import rope_scaling.extend as ext

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ext, "patch_config", boom)
    with pytest.raises(RuntimeError):
        extend_checkpoint(tiny_llama, tmp_path / "ext", method="yarn", factor=4)
    assert os.listdir(tmp_path) == []


def test_pickle_only_checkpoint_is_refused(tiny_llama, tmp_path):
    """A folder with pytorch_model.bin and no safetensors is refused with the reason."""
    src = tmp_path / "pickled"
    src.mkdir()
    shutil.copy(tiny_llama / "config.json", src / "config.json")
    (src / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(LongctxError, match="pickle"):
        extend_checkpoint(src, tmp_path / "out", method="yarn", factor=2)
    assert not (tmp_path / "out").exists()


def test_model_without_rope_is_refused(tmp_path):
    """GPT-2 (learned absolute positions) gets a clear error, not a guess."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}))
    with pytest.raises(LongctxError, match="no rotary"):
        extend_checkpoint(tmp_path, tmp_path.parent / "o", method="yarn", factor=2)


def test_unknown_model_type_is_refused(tmp_path):
    """An architecture we do not know is refused and the supported ones are named."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mystery", "max_position_embeddings": 8}))
    with pytest.raises(LongctxError, match="not supported.*llama"):
        read_rope_config(json.loads((tmp_path / "config.json").read_text()), tmp_path / "config.json")


def test_missing_config_names_the_file(tmp_path):
    """A folder without config.json is a one-line error naming the file."""
    with pytest.raises(LongctxError, match="config.json: missing"):
        read_config(tmp_path)


def test_corrupt_config_names_file_and_line(tmp_path):
    """Invalid JSON reports config.json and the line of the error."""
    (tmp_path / "config.json").write_text('{\n  "model_type": "llama",\n  oops\n}')
    with pytest.raises(LongctxError, match=r"config.json:3: not valid JSON"):
        read_config(tmp_path)


def test_target_not_above_current_is_refused(tiny_llama):
    """Target length equal to the current max_position_embeddings is refused, naming the field."""
    raw, path = _raw(tiny_llama)
    with pytest.raises(LongctxError, match="max_position_embeddings.*not above"):
        plan_extension(raw, path, method="yarn", target_length=256)


def test_factor_below_one_is_refused(tiny_llama):
    """--factor 0.5 would shrink the context: refused, naming the flag."""
    raw, path = _raw(tiny_llama)
    with pytest.raises(LongctxError, match="--factor"):
        plan_extension(raw, path, method="linear", factor=0.5)


def test_contradictory_length_and_factor_are_refused(tiny_llama):
    """1024 tokens is 4x the trained 256, so --factor 8 contradicts it."""
    raw, path = _raw(tiny_llama)
    with pytest.raises(LongctxError, match="contradict"):
        plan_extension(raw, path, method="yarn", target_length=1024, factor=8)


def test_rope_theta_with_a_non_abf_method_is_refused(tiny_llama):
    """--rope-theta means ABF; with --method yarn the flags contradict each other."""
    raw, path = _raw(tiny_llama)
    with pytest.raises(LongctxError, match="--rope-theta only applies"):
        plan_extension(raw, path, method="yarn", factor=4, rope_theta=1e6)


def test_phi3_refuses_methods_transformers_cannot_load(tmp_path):
    """Phi-3 only loads default/longrope RoPE: asking for yarn is an error naming what works."""
    from longctx.models.tiny import make_tiny_checkpoint

    src = make_tiny_checkpoint(tmp_path / "phi3", "phi3")
    raw, path = read_config(src)
    with pytest.raises(LongctxError, match="longrope"):
        plan_extension(raw, path, method="yarn", factor=4)


def test_abf_without_theta_picks_a_base_meeting_both_bounds(tiny_llama):
    """ABF's default base is at least both published bounds for the target (rotary dim 16, trained 256)."""
    raw, path = _raw(tiny_llama)
    theta = plan_extension(raw, path, method="abf", target_length=1024).rope_parameters["rope_theta"]
    assert theta >= critical_base(1024, dim=16, train_length=256, train_base=1e4) * (1 - 1e-12)
    assert theta >= lower_bound_base(1024, dim=16, rtol=1e-3) * (1 - 1e-3)


def test_auto_chooses_yarn_and_says_why(tiny_llama, capsys):
    """--method auto on a llama picks yarn, explains it, and --dry-run prints the table and writes nothing."""
    assert longctx_main(["extend", str(tiny_llama), "--method", "auto", "--factor", "4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "method     yarn  (yarn: " in out and "training-free" in out
    assert "pair" in out and "interpolate" in out and "nothing written" in out


def test_dry_run_says_linear_needs_training(tiny_llama, capsys):
    """--dry-run states that position interpolation is not training-free."""
    assert longctx_main(["extend", str(tiny_llama), "--method", "linear", "--factor", "4", "--dry-run"]) == 0
    assert "needs continued training" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_error(tiny_llama, tmp_path, capsys):
    """Through the real CLI a bad factor exits 2 with one line on stderr, no traceback."""
    code = longctx_main(["extend", str(tiny_llama), "--method", "yarn", "--factor", "0.5", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "factor" in err and "Traceback" not in err


def test_cli_writes_a_loadable_checkpoint(tiny_llama, tmp_path, capsys):
    """The README and docs/models.md command: extend with --overwrite twice in a row succeeds."""
    args = ["extend", str(tiny_llama), "--method", "yarn", "--target-length", "1024", "--out", str(tmp_path / "y"), "--overwrite"]
    assert longctx_main(args) == 0 and longctx_main(args) == 0
    cfg = json.loads((tmp_path / "y" / "config.json").read_text())
    assert cfg["max_position_embeddings"] == 1024


@pytest.mark.parametrize("flag,value", [
    ("--mscale", "nan"), ("--attention-factor", "inf"), ("--beta-fast", "nan"), ("--high-freq-factor", "inf"),
    ("--beta-slow", "-1"), ("--low-freq-factor", "0"), ("--mscale-all-dim", "-0.5"), ("--rope-theta", "nan"),
])
def test_cli_non_finite_or_out_of_range_method_flag_is_refused(tiny_llama, tmp_path, capsys, flag, value):
    """NaN, inf or a value outside the declared range: exit 2, one line naming the flag, nothing written."""
    method = {"--high-freq-factor": "llama3", "--low-freq-factor": "llama3", "--rope-theta": "abf"}.get(flag, "yarn")
    out = tmp_path / "o"
    code = longctx_main(["extend", str(tiny_llama), "--method", method, "--factor", "4", flag, value, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and flag in err and "Traceback" not in err
    assert not out.exists()


def test_cli_non_finite_per_pair_factor_is_refused(tiny_llama, tmp_path, capsys):
    """A NaN inside --short-factor is refused naming the flag (it would otherwise be written unchecked)."""
    code = longctx_main(["extend", str(tiny_llama), "--method", "longrope", "--factor", "4",
                         "--short-factor", "1,1,1,nan,1,1,1,1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--short-factor" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["linear", "ntk", "dynamic", "yarn", "llama3", "longrope", "abf"])
def test_extend_and_load_never_warn_about_the_original_length_key(tiny_llama, tmp_path, method):
    """config.json keeps original_max_position_embeddings in rope_parameters for every method (docs/models.md),
    and extending then loading it logs no "Unrecognized keys ... original_max_position_embeddings"
    (transformers accepts the key only for yarn/llama3/longrope); another unknown key still warns."""
    import logging

    from eval_longbench.models import load_model

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    log = logging.getLogger("transformers")
    level = log.level
    log.setLevel(logging.WARNING)  # conftest sets TRANSFORMERS_VERBOSITY=error
    log.addHandler(handler)
    try:
        rope = extend_checkpoint(tiny_llama, tmp_path / "x", method=method, factor=4)
        assert "original_max_position_embeddings" in rope
        load_model(tmp_path / "x", dtype="float32")
        assert [m for m in lines if "original_max_position_embeddings" in m] == []
        logging.getLogger("transformers.modeling_rope_utils").warning(
            "Unrecognized keys in `rope_parameters` for 'rope_type'='linear': {'original_max_position_embeddings', 'x'}")
        assert lines[-1].endswith("'x'}")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
