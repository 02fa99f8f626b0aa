"""The plan as a readable table (one row per memory term) or as a JSON-ready dict."""

from __future__ import annotations

from dataclasses import asdict

from longctx.plan.memory import GiB
from longctx.plan.planner import PlanResult
from longctx.plan.throughput import StepTime


def _fmt_tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}K"
    return str(n)


def render_table(result: PlanResult, max_seq: int | None = None, sp: int | None = None,
                 time: StepTime | None = None) -> str:
    """Per-GPU table: term, GiB, whether it is live at the peak, formula; then totals and verdict."""
    s, r = result.shape, result.run
    lines = [
        f"model   {s.name}: {s.num_params / 1e9:.2f}B params, L={s.num_layers} H={s.hidden_size} "
        f"heads={s.num_heads}/{s.num_kv_heads} I={s.intermediate_size} V={s.vocab_size}",
        f"run     seq_len {r.seq_len} on {r.gpus} GPU(s) x {r.gpu_mem_gib:g} GiB; sp {r.sp} ({r.layout}), dp {r.dp}, "
        f"micro-batch {r.micro_batch}; {r.sharding}, offload {r.offload}; checkpointing {r.checkpointing}"
        f"{' (offloaded)' if r.checkpoint_offload else ''}; mlp tiles {r.mlp_tiles(s.hidden_size)}; loss {'full logits' if r.loss_chunk <= 0 else f'chunk {r.loss_chunk}'}"
        f" ({r.loss_impl}); {r.dtype}; {r.tokens_per_rank} tokens per GPU",
        "",
        f"{'term (per GPU)':<22}{'GiB':>9}  {'at peak':<8} formula",
        "-" * 78,
    ]
    for t in result.breakdown:
        live = "yes" if result.peak_phase in t.phases else ""
        lines.append(f"{t.name:<22}{t.bytes / GiB:>9.2f}  {live:<8} {t.formula}")
    lines += [
        f"{'fragmentation margin':<22}{result.margin_bytes / GiB:>9.2f}  {'yes':<8} {r.frag_margin:g} x peak-phase sum",
        f"{'runtime overhead':<22}{result.overhead_bytes / GiB:>9.2f}  {'yes':<8} CUDA context, NCCL, workspaces",
        "-" * 78,
        f"{'predicted peak':<22}{result.total_bytes / GiB:>9.2f}  (phase: {result.peak_phase})",
        f"{'capacity':<22}{result.capacity_bytes / GiB:>9.2f}",
        f"verdict: {'FITS' if result.fits else 'DOES NOT FIT'} "
        f"({100 * result.total_bytes / result.capacity_bytes:.0f}% of capacity)",
    ]
    if max_seq is not None:
        lines.append(f"largest fitting seq_len with these settings: {_fmt_tokens(max_seq) if max_seq else 'none'}"
                     + (f" ({max_seq})" if max_seq >= 10_000 else ""))
    if sp is not None or max_seq is not None:
        lines.append(f"recommended sp degree for seq_len {r.seq_len}: "
                     f"{sp if sp else f'none of the divisors of {r.gpus} fits'}")
    if time is not None:
        lines.append(
            f"step time ≈ {time.seconds:.2f} s ({time.tokens_per_second:,.0f} tokens/s over {r.gpus} GPU(s)) at "
            f"MFU {time.mfu:g} of {time.peak_flops / 1e12:g} TFLOP/s; attention is {100 * time.attention_fraction:.0f}% "
            f"of {time.model_flops:.3g} model FLOPs")
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def render_json(result: PlanResult, max_seq: int | None = None, sp: int | None = None,
                time: StepTime | None = None) -> dict:
    out = result.to_dict()
    out["max_seq_len"] = max_seq
    out["recommended_sp"] = sp
    out["step_time"] = asdict(time) if time is not None else None
    return out
