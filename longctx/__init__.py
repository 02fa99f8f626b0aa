"""longctx: give a Hugging Face causal LM a long context window, and prove it works.

Stages (see README): ``rope_scaling`` (extend), ``packing`` (pack), ``longctx.train``
(train with ring attention), ``eval_longbench`` (needle, ppl, LongBench-Chat).
"""

__version__ = "0.1.0"
