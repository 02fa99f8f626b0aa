"""RULER (arXiv 2404.06654) for longctx: seeded, token-exact task generators with their scorers, a task
registry, a resumable runner and the effective-length rule. ``longctx ruler`` is the command.

To evaluate any model, give :func:`eval_longbench.ruler.runner.run_ruler` a
``generate(prompt, max_new_tokens) -> str`` callable and the model's tokenizer.
"""

from eval_longbench.ruler.base import DoesNotFit, GenContext, RulerTask, Sample, string_match_all, string_match_part
from eval_longbench.ruler.runner import RulerConfig, effective_length, run_ruler, summarize

__all__ = ["DoesNotFit", "GenContext", "RulerConfig", "RulerTask", "Sample", "effective_length", "run_ruler",
           "string_match_all", "string_match_part", "summarize"]
