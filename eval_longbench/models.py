"""Loading a checkpoint and turning it into a ``generate(prompt, max_new_tokens) -> str`` callable.

Every evaluation takes generation as a plain callable, so tests (and users with a server) can pass
their own: a stub that echoes the passkey proves the scoring, a random tiny model proves the plumbing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from longctx.checkpoint_files import check_model_weights
from longctx.errors import LongctxError

GenerateFn = Callable[[str, int], str]


def load_model(path: str | Path, *, trust_remote_code: bool = False, dtype: str = "auto", device: str = "cpu"):
    """Load ``(model, tokenizer)`` from a local directory (safetensors weights only), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise LongctxError(f"{path}: not a model directory (no config.json)")
    if not any(path.glob("*.safetensors")):
        raise LongctxError(f"{path}: no *.safetensors weights (pickle checkpoints are not loaded)")
    check_model_weights(path)
    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise LongctxError(f"--dtype: unknown {dtype!r}; choose auto, float32, bfloat16 or float16")
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    return model.to(device).eval(), tokenizer


def chat_prompt(tokenizer, user_text: str, system: str | None = None) -> str:
    """``user_text`` wrapped in the tokenizer's chat template, ready for the assistant's reply."""
    if not getattr(tokenizer, "chat_template", None):
        raise LongctxError("tokenizer has no chat_template; this model cannot be prompted as a chat model")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def hf_generate_fn(model, tokenizer, *, chat: bool = False, system: str | None = None) -> GenerateFn:
    """Greedy generation with a HF model; with ``chat`` the prompt goes through the chat template.

    The template output already contains any BOS it needs, so special tokens are not added twice.
    """
    device = next(model.parameters()).device

    @torch.inference_mode()
    def generate(prompt: str, max_new_tokens: int) -> str:
        text = chat_prompt(tokenizer, prompt, system) if chat else prompt
        ids = tokenizer(text, add_special_tokens=not chat, return_tensors="pt")["input_ids"].to(device)
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    return generate
