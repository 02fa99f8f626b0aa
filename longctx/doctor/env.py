"""The environment a doctor report describes: versions, the GPU, which optional accelerators import.

A kernel verdict means little without knowing which torch, CUDA, cuDNN and NCCL produced it, and
whether flash-attn / ring-flash-attn were in the path: this is the first thing a bug report needs.
Importing an optional package may fail with a CUDA/ABI error from a broken wheel rather than an
ImportError, so each is tried separately and its error is reported, never raised.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

OPTIONAL = ("flash_attn", "ring_flash_attn", "datasets")


def import_status(name: str) -> str:
    """"yes <version>" or "no (<error>)": an ImportError, or a CUDA/ABI error from a broken wheel."""
    try:
        mod = __import__(name)
    except Exception as err:
        return f"no ({type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''})"
    return f"yes {getattr(mod, '__version__', '')}".strip()


def environment() -> dict[str, Any]:
    """Versions (python, torch, transformers, CUDA runtime, cuDNN, NCCL), the GPU (name, capability,
    memory, SMs) and the import status of the optional packages."""
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                           "transformers": import_status("transformers"),
                           **{name: import_status(name) for name in OPTIONAL}}
    try:
        env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception as err:  # a missing libcudnn shows up here
        env["cudnn"] = f"error ({type(err).__name__})"
    if torch.cuda.is_available():
        try:
            p = torch.cuda.get_device_properties(0)
            env.update(gpu=p.name, gpu_count=torch.cuda.device_count(), capability=f"{p.major}.{p.minor}",
                       gpu_mem_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count,
                       nccl=".".join(map(str, torch.cuda.nccl.version())))
        except Exception as err:
            env["gpu_error"] = f"{type(err).__name__}: {err}"
    return env


def summary(env: dict[str, Any]) -> str:
    """One line for the table's environment row."""
    gpu = f"{env['gpu']} (sm {env['capability']}, {env['gpu_mem_gib']} GiB)" if "gpu" in env else "no CUDA device"
    return (f"torch {env['torch']}, cuda {env['cuda_runtime']}, cudnn {env.get('cudnn')}, nccl {env.get('nccl', '-')}; "
            f"{gpu}; flash_attn {env['flash_attn'].split(' (')[0]}, ring_flash_attn {env['ring_flash_attn'].split(' (')[0]}")
