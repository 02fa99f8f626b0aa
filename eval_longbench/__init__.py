"""Long-context evaluation: needle/passkey heatmaps, perplexity vs length, LongBench-Chat with a judge."""

from eval_longbench.haystack import make_passkey_sample, split_sentences
from eval_longbench.needle import NeedleConfig, run_needle
from eval_longbench.ppl import sliding_window_ppl

__all__ = ["make_passkey_sample", "split_sentences", "NeedleConfig", "run_needle", "sliding_window_ppl"]
