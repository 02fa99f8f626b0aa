"""A real merging BPE tokenizer for the haystack and RULER tests: token counts are not character counts."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from eval_longbench.haystack import NOISE_SENTENCES, PASSKEY_INTRO, PASSKEY_QUESTION


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A real merging BPE tokenizer (trained offline on noise), so token counts are not char counts."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = list(NOISE_SENTENCES) * 5 + [PASSKEY_INTRO, PASSKEY_QUESTION, "0123456789 Remember it."]
    trainer = trainers.BpeTrainer(vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)
