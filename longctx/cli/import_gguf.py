"""``longctx import-gguf``: convert a GGUF checkpoint into a Hugging Face folder."""

from __future__ import annotations

import argparse

from longctx.gguf import import_gguf


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="longctx import-gguf", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a GGUF checkpoint that transformers can read (llama.cpp, Ollama, LM Studio files)\n"
                    "into a plain Hugging Face folder: float32 model.safetensors, config.json without the GGUF\n"
                    "quantization block, tokenizer and chat template. Needs the gguf package\n"
                    "(pip install 'longctx-align[gguf]'). Quantized weights are dequantized, not re-quantized.\n\n"
                    "example:\n  longctx import-gguf model.Q4_K_M.gguf --out models/base && longctx inspect models/base")
    p.add_argument("gguf", help="the .gguf file")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier output of longctx at --out")
    a = p.parse_args(argv)
    out = import_gguf(a.gguf, a.out, overwrite=a.overwrite)
    print(f"wrote {out} (load it with AutoModelForCausalLM.from_pretrained, or pass it to longctx inspect / extend)")
    return 0
