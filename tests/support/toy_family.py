"""A toy model family, written as a new family is: ONE declaration file (what ``longctx/models/<family>.py``
holds). ``toyllama`` is Llama under another model_type; the transformers classes below stand for the
modeling code a real new family brings with it (transformers ships it, longctx does not write it)."""

from transformers import LlamaConfig, LlamaForCausalLM

from longctx.models.family import Family

FAMILY = Family(
    model_types=("toyllama",),
    description="a toy alias of Llama",
)


class ToyConfig(LlamaConfig):
    model_type = "toyllama"


class ToyForCausalLM(LlamaForCausalLM):
    config_class = ToyConfig
