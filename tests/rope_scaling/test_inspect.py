"""``longctx inspect``: architecture, RoPE and context of a checkpoint."""

from __future__ import annotations

import json

from safetensors import safe_open

from longctx.cli import main as longctx_main
from rope_scaling.extend import extend_checkpoint
from rope_scaling.inspect_ckpt import inspect_checkpoint


def test_inspect_reports_trained_and_target_context(tiny_llama, tmp_path):
    """After a yarn x4 extension: trained 256, target 1024, rope type yarn, safetensors parameter count."""
    out = tmp_path / "y"
    extend_checkpoint(tiny_llama, out, method="yarn", factor=4)
    info = inspect_checkpoint(out)
    assert (info["trained_context"], info["target_context"], info["rope_parameters"]["rope_type"]) == (256, 1024, "yarn")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        expected = sum(f.get_tensor(k).numel() for k in f.keys())
    assert info["weights"] == "safetensors" and info["parameters"] == expected


def test_inspect_dynamic_target_is_original_times_factor(tiny_llama, tmp_path):
    """Dynamic NTK keeps max_position_embeddings at 256; the claimed context is 256 x factor."""
    out = tmp_path / "d"
    extend_checkpoint(tiny_llama, out, method="dynamic", factor=4)
    info = inspect_checkpoint(out)
    assert info["max_position_embeddings"] == 256 and info["target_context"] == 1024


def test_inspect_cli_json(tiny_llama, capsys):
    """--json prints the same facts as machine-readable JSON."""
    assert longctx_main(["inspect", str(tiny_llama), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "llama" and info["head_dim"] == 16 and info["target_context"] == 256


def test_effective_rope_reads_back_what_extend_wrote(tiny_llama, tmp_path):
    """effective_rope(OUT) recomputes, from config.json alone, the frequencies the plan wrote (yarn, llama3)."""
    import torch

    from rope_scaling.checkpoint_config import read_config
    from rope_scaling.extend import effective_rope, plan_extension

    raw, path = read_config(tiny_llama)
    for method in ("yarn", "llama3"):
        out = tmp_path / method
        extend_checkpoint(tiny_llama, out, method=method, factor=4)
        plan = plan_extension(raw, path, method=method, factor=4)
        rc, inv_freq, attn = effective_rope(out)
        assert rc.rope_type == method and torch.equal(inv_freq, plan.new_inv_freq) and attn == plan.attention_factor


def test_inspect_names_a_corrupt_safetensors_file(tiny_llama, tmp_path):
    """A safetensors file whose header cannot be parsed is a one-line error naming that file, not a traceback."""
    import shutil

    import pytest

    from longctx.core.errors import LongctxError

    bad = tmp_path / "bad"
    shutil.copytree(tiny_llama, bad)
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(LongctxError, match=r"model\.safetensors: not a valid safetensors file"):
        inspect_checkpoint(bad)
