"""``longctx make-tiny``: a tiny random checkpoint and the byte tokenizer, to try every command in seconds."""

from __future__ import annotations

import argparse

from longctx.core.errors import LongctxError
from longctx.models.tiny import FAMILIES, make_tiny_checkpoint


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="longctx make-tiny",
        description="Write a tiny randomly initialised checkpoint and a byte-level tokenizer with a chat "
        "template. Useful to try every longctx command in seconds; it has learned nothing.",
    )
    p.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    p.add_argument("--family", default="llama", choices=list(FAMILIES), help="model_type to build (default: llama)")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2, help="key/value heads; must divide --heads")
    p.add_argument("--intermediate-size", type=int, default=128, help="MLP width")
    p.add_argument("--max-position-embeddings", type=int, default=256, help="the model's original context length")
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if not -2**63 <= a.seed < 2**64:
        raise LongctxError(f"--seed: must fit in 64 bits, got {a.seed}")
    out = make_tiny_checkpoint(
        a.out, a.family, seed=a.seed, overwrite=a.overwrite, hidden_size=a.hidden_size, num_layers=a.layers,
        num_heads=a.heads, num_kv_heads=a.kv_heads, intermediate_size=a.intermediate_size, max_position_embeddings=a.max_position_embeddings,
        rope_theta=a.rope_theta,
    )
    print(f"wrote tiny {a.family} checkpoint to {out}")
    return 0
