"""Optional parameter/optimizer sharding with FSDP2 (``torch.distributed.fsdp.fully_shard``).

``parallel.fsdp: true`` shards every decoder layer and the root module over *all* ranks (DP x SP,
as DeepSpeed ZeRO-3 does): each rank keeps 1/world of the parameters, gradients and AdamW states.
FSDP reduce-scatters gradients itself, so the trainer's own all-reduce is skipped; the divide
factor is set to 1 because the loss is already normalised by the global sequence count M (the
gradient must be the SUM over ranks). Checkpoints and the export gather full state dicts through
``torch.distributed.checkpoint.state_dict``. Runs on CPU/gloo (tested) and CUDA/NCCL (not run here).
"""

from __future__ import annotations

import torch


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks (``model.model.layers`` in Llama/Qwen/Mistral/GLM/Phi3)."""
    layers = getattr(model.base_model, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no base_model.layers to shard")
    return list(layers)


def apply_fsdp(root: torch.nn.Module, model: torch.nn.Module, device_type: str, world_size: int) -> torch.nn.Module:
    """Shard ``model``'s decoder layers, then ``root`` (the module whose forward also applies the output head,
    ``step.LMLoss``), with FSDP2 over a 1-D mesh of all ranks; gradients are summed, not averaged."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    mesh = init_device_mesh(device_type, (world_size,))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(root, mesh=mesh)
    for m in root.modules():  # every FSDP unit: plain SUM reduce-scatter (gloo has no PREMUL_SUM), factor 1
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    return root


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict | None]:
    """Full (unsharded) model and optimizer state dicts on CPU, on rank 0 (collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None
    return msd, osd


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, msd: dict, osd: dict) -> None:
    """Scatter full state dicts (read by every rank) back into the sharded model and optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, msd, options=opts)
    set_optimizer_state_dict(model, optimizer, osd, options=opts)
