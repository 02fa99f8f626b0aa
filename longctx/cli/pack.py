"""``longctx pack``: tokenize SFT data and pack it into fixed-length packs with LongAlign loss weights."""

from __future__ import annotations

import argparse
import sys

from packing.pipeline import OVERLONG, PackConfig, pack_files
from packing.report import format_report
from packing.tokenize import TRAIN_ON
from packing.writer import MODES

DESCRIPTION = """\
Tokenize SFT records with the tokenizer's chat template, mask prompt tokens, and pack the
sequences into fixed-length packs (best-fit-decreasing) with LongAlign loss weights: each target
token of sequence i carries 1/N_i, so every sequence counts equally in the loss whatever its length
or pack. The trainer divides the weighted sum by the number of sequences of the optimizer step.

Input: JSONL, JSON, Parquet files or saved `datasets` directories; records with `messages`
[{role, content}], ShareGPT `conversations` [{from, value}], or plain `text`.
Output (written atomically): a datasets directory (columns input_ids, labels, position_ids,
seq_lens, loss_weights), manifest.json, report.txt and lengths.png.
"""

EPILOG = """\
examples:
  longctx pack data.jsonl --tokenizer ckpt/ --pack-length 65536 --out packs/
  longctx pack a.jsonl b.parquet --tokenizer ckpt/ --pack-length 8192 --out packs/ \\
      --overlong split --skip-bad --train-on last
  longctx pack data.jsonl --tokenizer ckpt/ --pack-length 65536 --mode sorted --batch-size 8 --out batches/
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longctx pack", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", metavar="DATA", help="input files (.jsonl/.json/.parquet) or saved datasets directories")
    p.add_argument("--tokenizer", required=True, help="tokenizer (or checkpoint) directory; its chat template is used")
    p.add_argument("--pack-length", type=int, required=True, help="tokens per pack, e.g. 65536 (the training context)")
    p.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    p.add_argument("--train-on", default="assistant", choices=TRAIN_ON,
                   help="tokens with a loss: every assistant turn (default), the last assistant turn, or all tokens")
    p.add_argument("--skip-bad", action="store_true", help="skip bad records and count them in the report (default: stop at the first)")
    p.add_argument("--overlong", default="error", choices=OVERLONG,
                   help="sequences longer than --pack-length: stop with an error (default), drop, truncate (keep the head), "
                        "or split into independent chunks")
    p.add_argument("--strategy", default="bfd", choices=["bfd", "greedy"],
                   help="bfd: best-fit-decreasing (default); greedy: LongAlign's in-order fill (a baseline)")
    p.add_argument("--mode", default="pack", choices=MODES,
                   help="pack: fixed-length packs (default); sorted: LongAlign sorted batching, one row per sequence "
                        "with a batch_id (batches padded at load time)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per batch in --mode sorted (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pack/batch order (default 0); output is deterministic")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    cfg = PackConfig(
        pack_length=a.pack_length, train_on=a.train_on, skip_bad=a.skip_bad, overlong=a.overlong,
        strategy=a.strategy, mode=a.mode, batch_size=a.batch_size, seed=a.seed, progress=not a.no_progress,
    )
    res = pack_files(a.data, a.tokenizer, a.out, cfg, overwrite=a.overwrite)
    print(format_report(res.manifest))
    print(f"wrote {res.out} (manifest.json, report.txt, lengths.png)", file=sys.stderr)
    return 0
