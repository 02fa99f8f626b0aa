"""``longctx ppl``: sliding-window perplexity vs context length; parse, validate, report. The work is
:func:`eval_longbench.ppl.run_ppl`, run over the models by :func:`eval_longbench.sweep.run_sweep`."""

from __future__ import annotations

import argparse
from pathlib import Path

from eval_longbench.fingerprint import text_fingerprint
from eval_longbench.flags import check_int, parse_lengths
from eval_longbench.haystack import builtin_text, read_text_sources
from eval_longbench.model_source import (
    add_model_source_args, check_model_source, input_paths, model_sources, open_source, refuse_endpoint,
)
from eval_longbench.plots import plot_ppl
from eval_longbench.ppl import rows_to_csv, run_ppl
from eval_longbench.sweep import run_sweep
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_text, check_out_vs_inputs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="longctx ppl", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sliding-window perplexity at several context lengths (the YaRN paper's protocol: the\n"
        "window is the evaluation length, moved by --stride; every length scores the same first\n"
        "--max-tokens tokens). Logits are computed in chunks, never for a whole window at once.\n"
        "Writes OUT/results.json (resumable), OUT/ppl.csv and OUT/ppl.png (one line per model).\n\n"
        "example:\n  longctx ppl base/ extended/ --lengths 1k,2k,4k,8k --text book.txt --stride 256 --out runs/ppl",
    )
    add_model_source_args(p, multiple=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--lengths", default="256,512,1024", help="evaluation lengths, e.g. 1k,2k,4k (default: 256,512,1024)")
    p.add_argument("--text", nargs="+", default=["builtin"],
                   help="text files/directories (*.txt), or 'builtin' (seeded noise sentences: periodic, easy) (default: builtin)")
    p.add_argument("--stride", type=int, default=256, help="tokens the window moves each step; capped at the length (default: 256)")
    p.add_argument("--max-tokens", type=int, help="tokens of text scored at every length (default: the largest length)")
    p.add_argument("--chunk-size", type=int, default=1024, help="positions per output-head chunk (default: 1024)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT/results.json")
    return p


def main(argv: list[str]) -> int:
    a = _parser().parse_args(argv)
    refuse_endpoint(a, "ppl", "needs the model's logits for every token, which chat/completions does not return")
    check_model_source(a)
    check_int("--stride", a.stride)
    check_int("--chunk-size", a.chunk_size)
    check_int("--max-tokens", a.max_tokens, minimum=2)  # at least one token to score after the first
    check_out_vs_inputs(a.out, [*input_paths(a), *a.text])

    lengths = parse_lengths(a.lengths)
    if a.max_tokens is None and max(lengths) < 2:  # the span scored defaults to the largest length
        raise LongctxError(f"--lengths: the largest length, {max(lengths)}, is below 2 (perplexity needs a token "
                           "to score after the first)")
    need = max(lengths) if a.max_tokens is None else a.max_tokens
    text = builtin_text(need) if a.text == ["builtin"] else read_text_sources(a.text)
    out = Path(a.out)
    meta = {"text": a.text, "text_sha256": text_fingerprint(text), "stride": a.stride, "max_tokens": need}

    def evaluate(store, src):
        m = open_source(a, src, chat=False)
        ids = m.tokenizer(text, add_special_tokens=True)["input_ids"]
        rows = run_ppl(m.model, ids, lengths, store, model_name=m.name, stride=a.stride, max_tokens=need,
                       chunk_size=a.chunk_size)
        for r in rows:
            print(f"{m.name} @ {r['length']}: ppl {r['ppl']:.3f} over {r['tokens']} tokens")
        return rows

    def report(store, by_model):
        rows = [r for model_rows in by_model.values() for r in model_rows]
        atomic_write_text(out / "ppl.csv", rows_to_csv(rows))
        plot_ppl(rows, out / "ppl.png")
        print(f"wrote {out / 'ppl.csv'} and {out / 'ppl.png'}")

    run_sweep(out, meta, model_sources(a), evaluate, report, overwrite=a.overwrite)
    return 0
