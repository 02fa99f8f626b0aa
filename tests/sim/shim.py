"""Compile (once, cached) the C++ shim that makes a CPU-only torch believe it has a CUDA device."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "cuda_shim.cpp"


class ShimUnavailable(RuntimeError):
    """No C++ compiler, a CUDA build of torch (use tests/gpu there), or the compile failed."""


def _torch_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise ShimUnavailable("torch is not installed")
    return Path(spec.origin).parent


def cache_dir() -> Path:
    return Path(os.environ.get("LONGCTX_SIM_CACHE", Path.home() / ".cache" / "longctx-sim"))


def shim_library() -> Path:
    """The path of the compiled shim for the installed torch (built in ~2 s on first use)."""
    import torch

    if torch.version.cuda is not None or torch.version.hip is not None:
        raise ShimUnavailable(f"torch {torch.__version__} is a GPU build: the simulator is for CPU-only builds")
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        raise ShimUnavailable("no C++ compiler (g++) on PATH to build the CUDA simulator shim")
    tdir = _torch_dir()
    key = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + str(tdir).encode()).hexdigest()[:16]
    out = cache_dir() / f"libcudasim-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    cmd = [cxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-w", f"-I{tdir / 'include'}", str(SOURCE),
           f"-L{tdir / 'lib'}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{tdir / 'lib'}", "-o", str(tmp)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ShimUnavailable(f"compiling {SOURCE.name} failed: {done.stderr[-2000:]}")
    os.replace(tmp, out)  # atomic: a concurrent build never sees half a library
    return out
