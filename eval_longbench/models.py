"""Loading a checkpoint and turning it into a ``generate(prompt, max_new_tokens) -> str`` callable.

Every evaluation takes generation as a plain callable, so tests (and users with a server) can pass
their own: a stub that echoes the passkey proves the scoring, a random tiny model proves the plumbing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from longctx.core.checkpoint_files import SAFE_LOAD_KWARGS, check_model_weights
from longctx.core.errors import LongctxError

GenerateFn = Callable[[str, int], str]
BatchGenerateFn = Callable[[Sequence[str], int], list[str]]


def load_model(path: str | Path, *, trust_remote_code: bool = False, dtype: str = "auto", device: str = "cpu"):
    """Load ``(model, tokenizer)`` from a local directory (safetensors weights only), in eval mode."""
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
        path, dtype=torch_dtype, trust_remote_code=trust_remote_code, **SAFE_LOAD_KWARGS
    )
    return model.to(device).eval(), tokenizer


def chat_prompt(tokenizer, user_text: str, system: str | None = None) -> str:
    """``user_text`` wrapped in the tokenizer's chat template, ready for the assistant's reply."""
    if not getattr(tokenizer, "chat_template", None):
        raise LongctxError("tokenizer has no chat_template; this model cannot be prompted as a chat model")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def hf_generate_fn(model, tokenizer, *, chat: bool = False, system: str | None = None,
                   templated: bool = False) -> GenerateFn:
    """Greedy generation with a HF model; with ``chat`` the prompt goes through the chat template.

    The template output already contains any BOS it needs, so special tokens are not added twice.
    ``templated``: the prompt already is the templated conversation (RULER's, ending inside the
    assistant's turn): it is tokenized as it stands, with no special tokens added.
    """
    batch = hf_generate_batch_fn(model, tokenizer, chat=chat, system=system, templated=templated)
    return lambda prompt, max_new_tokens: batch([prompt], max_new_tokens)[0]


def _eos_ids(model, tokenizer) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


def hf_generate_batch_fn(model, tokenizer, *, chat: bool = False, system: str | None = None,
                         batch_size: int = 8, synced: bool = False, templated: bool = False) -> BatchGenerateFn:
    """Batched greedy generation: ``generate(prompts, max_new_tokens) -> replies`` (input order).

    Prompts are grouped by token length and each group is decoded ``batch_size`` rows per
    ``model.generate`` call, so no row is ever padded (no attention mask to build, the same math as
    one prompt at a time) and a passkey grid of one length costs a few calls instead of one per
    prompt. Each reply is cut at its first end-of-sequence token, exactly where single-prompt
    generation stops. ``templated``: prompts already hold the chat template's text (see
    :func:`hf_generate_fn`). ``synced``: every rank of an FSDP group calls this together (transformers'
    ``synced_gpus``: ranks keep stepping until all are done, as sharded forwards are collective).
    """
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _eos_ids(model, tokenizer)

    @torch.no_grad()
    def generate(prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        encoded = [tokenizer(chat_prompt(tokenizer, p, system) if chat else p,
                             add_special_tokens=not (chat or templated))["input_ids"] for p in prompts]
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded):
            groups.setdefault(len(ids), []).append(i)
        replies: list[str] = [""] * len(prompts)
        for rows in groups.values():
            for s in range(0, len(rows), batch_size):
                chunk = rows[s:s + batch_size]
                ids = torch.tensor([encoded[i] for i in chunk], dtype=torch.long, device=device)
                out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=pad, use_cache=True, synced_gpus=synced)
                for i, new in zip(chunk, out[:, ids.shape[1]:].tolist()):
                    cut = next((j + 1 for j, t in enumerate(new) if t in eos), len(new))
                    replies[i] = tokenizer.decode(new[:cut], skip_special_tokens=True)
        return replies

    return generate
