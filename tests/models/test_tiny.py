"""`longctx make-tiny`: impossible sizes are refused up front, naming the flag, and nothing is written."""

import pytest

from longctx.core.errors import LongctxError
from longctx.cli.make_tiny import main as tiny_main
from longctx.models.tiny import tiny_config


@pytest.mark.parametrize("flags, flag", [
    (["--kv-heads", "3"], "--kv-heads"),
    (["--kv-heads", "0"], "--kv-heads"),
    (["--layers", "0"], "--layers"),
    (["--layers", "-2"], "--layers"),
    (["--heads", "0"], "--heads"),
    (["--heads", "3"], "--heads"),
    (["--hidden-size", "0"], "--hidden-size"),
    (["--intermediate-size", "0"], "--intermediate-size"),
    (["--max-position-embeddings", "0"], "--max-position-embeddings"),
    (["--rope-theta", "nan"], "--rope-theta"),
    (["--rope-theta", "1"], "--rope-theta"),
    (["--hidden-size", "24", "--heads", "4", "--kv-heads", "2"], "--heads"),  # head dim 6: fine; glm's rotary 3 is odd
])
def test_make_tiny_refuses_impossible_sizes_naming_the_flag(tmp_path, flags, flag):
    """`--kv-heads 3` with 4 heads and `--layers 0` used to build (or crash building) a model; now one line, no output."""
    family = ["--family", "glm"] if flags[:2] == ["--hidden-size", "24"] else []
    out = tmp_path / "tiny"
    with pytest.raises(LongctxError, match=f"^{flag}: ") as err:
        tiny_main(["--out", str(out), *family, *flags])
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_tiny_config_accepts_grouped_query_heads_that_divide():
    """The checks refuse only what is impossible: 4 heads over 2 KV heads, head dim 16, is the default."""
    cfg = tiny_config("llama", num_heads=4, num_kv_heads=2)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers) == (4, 2, 2)
