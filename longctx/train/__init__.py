"""``longctx train``: continued long-context training on packs (DP x SP, LongAlign loss, atomic checkpoints).

Library entry points (the CLI is a thin layer over them)::

    from longctx.train import Trainer, load_config
    summary = Trainer(load_config("run.yaml", ["optim.lr=1e-5"])).run()
"""

from longctx.train.config import RunConfig, from_dict, load_config, validate
from longctx.train.trainer import Trainer, warmup_cosine

__all__ = ["RunConfig", "Trainer", "from_dict", "load_config", "validate", "warmup_cosine"]
