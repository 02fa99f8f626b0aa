"""How the trainer lays the model out in memory: FSDP2 sharding, and the ALST memory set (tiled MLP,
checkpoint offload), each applied to an already built Hugging Face model without changing its weights.

Optional parameter/optimizer sharding with FSDP2 (``torch.distributed.fsdp.fully_shard``).

``parallel.fsdp: true`` shards every decoder layer and the root module over *all* ranks (DP x SP,
as DeepSpeed ZeRO-3 does): each rank keeps 1/world of the parameters, gradients and AdamW states.
FSDP reduce-scatters gradients itself, so the trainer's own all-reduce is skipped; the divide
factor is set to 1 because the loss is already normalised by the global sequence count M (the
gradient must be the SUM over ranks). Checkpoints and the export gather full state dicts through
``torch.distributed.checkpoint.state_dict``. Runs on CPU/gloo (tested) and CUDA/NCCL (not run here).
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from longctx.core.errors import LongctxError
from longctx.core.sizing import auto_mlp_tiles
from longctx.models.family import Family
from longctx.models.registry import family_of


def model_family(model: torch.nn.Module) -> Family:
    """The declared family of a loaded Hugging Face model (one error line if it has none)."""
    return family_of(model.config, f"{type(model).__name__}: config")


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks, where the model's family declares them (``Family.layers``)."""
    return model_family(model).decoder_layers(model)


def enable_checkpointing(model: torch.nn.Module, checkpointing_kwargs: dict | None = None) -> None:
    """Activation checkpointing of every decoder layer (non-reentrant unless ``checkpointing_kwargs`` say
    otherwise), under either transformers name (``activation_checkpointing_enable`` in 5.2x, the old
    ``gradient_checkpointing_enable`` then warns; the GPU image's 5.17 has only the old one).

    No ``context_fn`` is needed for sequence parallelism: the trainer passes the SP context as a
    keyword of the model call, which the checkpoint keeps with the layer's inputs, so every recompute
    sees it on whichever thread autograd runs it (CUDA runs backward on a worker thread)."""
    kwargs = {"use_reentrant": False} if checkpointing_kwargs is None else checkpointing_kwargs
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_fsdp(root: torch.nn.Module, model: torch.nn.Module, device_type: str, world_size: int,
               mixed_precision: bool = False) -> torch.nn.Module:
    """Shard ``model``'s decoder layers, then ``root`` (the module whose forward also applies the output head,
    ``step.LMLoss``), with FSDP2 over a 1-D mesh of all ranks; gradients are summed, not averaged.

    ``mixed_precision`` (the trainer's CUDA policy, as torchtitan's): float32 master weights stay sharded
    (the optimizer updates them); each unit's all-gather casts them to bf16, so the layers compute in
    bf16 without autocast (whose weight cache would hold bf16 copies of every gathered layer until the
    forward ends), and gradients are reduce-scattered in float32."""
    mesh = init_device_mesh(device_type, (world_size,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision else None
    kwargs = {"mp_policy": mp} if mp is not None else {}
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, **kwargs)
    fully_shard(root, mesh=mesh, **kwargs)
    for m in root.modules():  # every FSDP unit: plain SUM reduce-scatter (gloo has no PREMUL_SUM), factor 1
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    return root


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[dict, dict | None]:
    """Full (unsharded) model and optimizer state dicts on CPU, on rank 0 (collective)."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None
    return msd, osd


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, msd: dict, osd: dict,
                    strict: bool = True) -> None:
    """Scatter full state dicts (read by every rank) back into the sharded model and optimizer (``strict``
    False: ``msd`` holds only some parameters, LoRA's trainable ones)."""
    opts = StateDictOptions(full_state_dict=True, strict=strict)
    set_model_state_dict(model, msd, options=opts)
    set_optimizer_state_dict(model, optimizer, osd, options=opts)


# ---------------------------------------------------------------- ALST memory set (arXiv 2506.13996)


class TiledMLPFunction(torch.autograd.Function):
    """``mlp(x)`` computed over ``tiles`` slices of the sequence (dim -2), saving only ``x``.

    Forward runs each tile without autograd and concatenates the outputs; backward recomputes one tile
    at a time with autograd and back-propagates it at once, so the MLP's intermediate activations
    (gate, up, silu(gate)·up: 3-4 x I per token) exist for one tile, never for the whole sequence.
    An MLP is per token, so the result and the input gradient are those of ``mlp(x)``; the parameter
    gradients are the sum of the per-tile ones, accumulated straight into ``.grad`` by the inner
    ``torch.autograd.backward`` (the same float32 sums in a different order: ~1e-7 relative).
    ``params`` are passed only so that autograd sees the function depends on them.
    """

    @staticmethod
    def forward(ctx, fn, x, tiles, *params):  # noqa: D401 - autograd signature
        ctx.fn, ctx.tiles = fn, tiles
        # Autocast reaches a custom function's forward but not its backward: record it, so the recompute
        # runs in the same dtype (bf16 matmuls on tensor cores, not float32 ones: 2-3x slower).
        device = x.device.type
        ctx.amp = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.save_for_backward(x)
        with torch.no_grad():  # x.detach(): no views of a grad-requiring tensor made under no_grad
            return torch.cat([fn(t) for t in x.detach().tensor_split(tiles, dim=-2)], dim=-2)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[1] else None
        start = 0
        device, enabled, dtype = ctx.amp
        for xt, gt in zip(x.tensor_split(ctx.tiles, dim=-2), grad_out.tensor_split(ctx.tiles, dim=-2)):
            n = xt.shape[-2]
            xt = xt.detach().requires_grad_(grad_x is not None)
            with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
                out = ctx.fn(xt)
            torch.autograd.backward(out, gt)
            if grad_x is not None:
                grad_x.narrow(-2, start, n).copy_(xt.grad)
            start += n
        return (None, grad_x, None) + (None,) * (len(ctx.needs_input_grad) - 3)


def tiled_mlp_forward(mlp: torch.nn.Module, tiles: int = 0):
    """A ``forward`` for ``mlp`` that runs :class:`TiledMLPFunction` (``tiles`` = 0: :func:`auto_mlp_tiles`).

    Without grad (evaluation) or with a single tile it is the module's own forward."""
    plain = type(mlp).forward.__get__(mlp)
    hidden = getattr(mlp, "hidden_size", None)

    def forward(x: torch.Tensor) -> torch.Tensor:
        n = tiles or auto_mlp_tiles(x[..., 0].numel(), hidden or x.shape[-1])  # all tokens of the batch
        n = min(n, x.shape[-2])
        if n <= 1 or not torch.is_grad_enabled():
            return plain(x)
        params = [p for p in mlp.parameters() if p.requires_grad]
        return TiledMLPFunction.apply(plain, x, n, *params)

    return forward


def apply_tiled_mlp(model: torch.nn.Module, tiles: int = 0) -> int:
    """Make every decoder layer's MLP (the module its family names, ``Family.mlp``; it must be per token)
    run over sequence tiles with recomputation (``train.tiled_mlp``). Patches the instance's ``forward``
    only: parameter names, state dicts and checkpoints are unchanged. Returns the number of MLPs patched."""
    family = model_family(model)
    if not family.mlp_per_token:
        raise LongctxError(f"config: train.tiled_mlp: the {family.description} MLP ({family.mlp}) is not per token, "
                           "so tiling the sequence would change it; set train.tiled_mlp: false")
    n = 0
    for layer in family.decoder_layers(model):
        mlp = family.mlp_of(layer)
        if mlp is None or not any(True for _ in mlp.parameters()):
            raise ValueError(f"{type(layer).__name__}: no per-token .{family.mlp} module to tile")
        mlp.forward = tiled_mlp_forward(mlp, tiles)
        n += 1
    return n


class HostOffload(torch.autograd.graph.saved_tensors_hooks):
    """Saved-tensor hooks that keep each saved activation in host memory until backward needs it.

    Pack copies the tensor into a fresh host buffer and drops the device copy; unpack copies it back to
    its device. Parameters and tensors below ``min_bytes`` stay where they are (they live anyway / are
    not worth a copy). On CUDA (``pin_memory``) the host buffer is page-locked and the device->host copy
    runs on a side stream (:func:`offload_stream`) that first waits for the compute stream, so the copy
    overlaps the next layer's compute; the tensor's memory is kept until that copy is done
    (``record_stream``), and the copy back in backward waits for it on the GPU (an event), never on the
    host. On a CPU-only run the "host" is the same memory: the copy is made (the path is exercised and
    tested) but the original is freed, so the footprint is that of plain checkpointing (the planner
    models it so).
    """

    def __init__(self, pin_memory: bool, min_bytes: int = 1 << 16, stats: dict | None = None):
        def pack(t: torch.Tensor):
            nbytes = t.numel() * t.element_size()
            if isinstance(t, torch.nn.Parameter) or nbytes < min_bytes or t.is_sparse:
                return (None, t, None)
            host = torch.empty(t.size(), dtype=t.dtype, layout=t.layout, pin_memory=pin_memory)
            event = None
            if pin_memory and t.device.type == "cuda":
                stream = offload_stream(t.device)
                stream.wait_stream(torch.cuda.current_stream(t.device))  # t is computed
                with torch.cuda.stream(stream):
                    host.copy_(t, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record(stream)
                t.record_stream(stream)  # the allocator must not reuse t's memory before the copy ends
            else:
                host.copy_(t, non_blocking=pin_memory)
            if stats is not None:
                stats["tensors"] = stats.get("tensors", 0) + 1
                stats["bytes"] = stats.get("bytes", 0) + nbytes
            return (t.device, host, event)

        def unpack(packed):
            device, t, event = packed
            if device is None:
                return t
            if event is not None:
                torch.cuda.current_stream(device).wait_event(event)  # on the GPU: the host copy is complete
            return t.to(device, non_blocking=pin_memory)

        super().__init__(pack, unpack)


_OFFLOAD_STREAMS: dict = {}


def offload_stream(device: torch.device):
    """One side stream per CUDA device for the offload copies (created on first use)."""
    if device not in _OFFLOAD_STREAMS:
        _OFFLOAD_STREAMS[device] = torch.cuda.Stream(device)
    return _OFFLOAD_STREAMS[device]


def checkpointing_enabled(model: torch.nn.Module) -> bool:
    """Whether :func:`enable_checkpointing` is on for ``model``, read under the flag name this transformers has."""
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return bool(getattr(model, name))


def apply_checkpoint_offload(model: torch.nn.Module, pin_memory: bool, min_bytes: int = 1 << 16,
                             stats: dict | None = None) -> int:
    """Offload the inputs each checkpointed decoder layer saves to host memory (``model.checkpoint_offload``).

    Each layer's checkpoint function (``_gradient_checkpointing_func``, set by :func:`enable_checkpointing`)
    is wrapped in :class:`HostOffload`, so the hooks catch exactly what the checkpoint keeps, its inputs; the
    checkpoint's own hooks, entered later, take the layer's inner activations (recomputed in backward). This
    holds wherever transformers calls the checkpoint: in the layer's ``forward`` (>= 5.2x) or ``__call__``
    (5.17, where wrapping ``forward`` would land inside the checkpoint and copy every activation). Needs
    gradient checkpointing on first (without it a layer's whole ``forward`` is wrapped, copying every
    activation). ``stats``, when given, counts the offloaded tensors and bytes. Returns the number of layers
    wrapped."""
    n = 0
    for layer in decoder_layers(model):
        checkpointed = getattr(layer, "gradient_checkpointing", False)
        name = "_gradient_checkpointing_func" if checkpointed and hasattr(layer, "_gradient_checkpointing_func") else "forward"
        inner = getattr(layer, name)

        def offloaded(*args, _inner=inner, **kwargs):
            with HostOffload(pin_memory, min_bytes, stats):
                return _inner(*args, **kwargs)

        setattr(layer, name, offloaded)
        n += 1
    return n
