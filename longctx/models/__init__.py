"""Model families: what is specific to Llama, Qwen2, Mistral, GLM-4 ... lives here, one file each.

Below the stages (imports only ``longctx.core``), so ``rope_scaling`` reads the same declarations as the
trainer and the planner. ``tiny`` builds random checkpoints of a declared family (``make-tiny``).
"""

from longctx.models.family import LOGIT_TRANSFORMS, Family
from longctx.models.moe import expert_count, refuse_moe
from longctx.models.registry import (FAMILIES, NO_ROPE, family_of, find_family, logit_transforms, refuse_logit_transforms,
                                     supported, trainable_family)

__all__ = ["Family", "FAMILIES", "LOGIT_TRANSFORMS", "NO_ROPE", "expert_count", "family_of", "find_family",
           "logit_transforms", "refuse_logit_transforms", "refuse_moe", "supported", "trainable_family"]
