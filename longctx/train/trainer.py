"""The trainer: phase-named methods that tie config, mesh, data, model, step, checkpoints together.

    trainer = Trainer(load_config("run.yaml", ["optim.lr=1e-5"]))
    summary = trainer.run()          # setup -> resume -> loop (steps, checkpoints, signals) -> export

Run under ``torchrun``/``accelerate launch`` (RANK/WORLD_SIZE/LOCAL_RANK from the environment), under
``longctx.distributed.launch.run_local`` (CPU, gloo), or as a single process.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import AutoConfig, AutoModelForCausalLM

from longctx.core.checkpoint_files import SAFE_LOAD_KWARGS, check_model_weights, require_safetensors
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_text, check_can_create, check_out_vs_inputs, read_json
from longctx.distributed.hf_attention import register
from longctx.distributed.layouts import LAYOUTS, get_layout
from longctx.distributed.layouts.choose import AUTO, resolve_layout
from longctx.distributed.mesh import Groups, Mesh, build_groups, build_layout_groups, env_world
from longctx.models.moe import refuse_moe
from longctx.models.registry import family_of, trainable_family
from longctx.plan import plan_run, shape_from_config
from longctx.plan.options import run_from_train_config
from longctx.train import checkpoint as ckpt
from longctx.train import lora
from longctx.train.config import RunConfig, config_changes, describe_changes, dump_yaml, validate
from longctx.train.data import StepData, open_packs
from longctx.train.evaluate import TrainEval, read_eval_records, summary_line
from longctx.train.export import export_hf
from longctx.train.metrics import Metrics
from longctx.train.parallelize import (
    apply_checkpoint_offload,
    apply_fsdp,
    apply_tiled_mlp,
    enable_checkpointing,
    full_state,
)
from longctx.train.step import LMLoss, StepOptions, train_step

StepCallback = Callable[["Trainer", int, dict], None]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier for optimizer step ``step`` (0-based): linear warmup, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """Continued long-context training; ``callbacks`` run after every step (tests use them)."""

    def __init__(self, cfg: RunConfig, callbacks: list[StepCallback] | None = None):
        self.cfg = cfg
        self.callbacks = list(callbacks or [])
        self.step = 0  # optimizer steps done
        self.position = 0  # data units consumed
        self.stop_requested = False
        self.stopped_early: str | None = None  # "eval.stop_at" once the evaluation target was reached
        self.history: list[dict] = []
        self.evaluator: Any = None  # longctx.train.evaluate.TrainEval when the eval section is on
        self.peft_model: Any = None  # the PeftModel around self.model when peft.method is lora

    # ---------------------------------------------------------------- setup
    def setup_distributed(self) -> None:
        """Join (or create, from the torchrun environment) the process group; build DP x SP groups."""
        rank, world, local_rank = env_world()
        # The device first: NCCL binds its communicator to the current CUDA device, so set_device after
        # init_process_group would put every rank's communicator on cuda:0 (as torchtitan does: set, then init
        # with device_id).
        if torch.cuda.is_available():
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if world > 1 and not dist.is_initialized():
            timeout = {"timeout": timedelta(seconds=self.cfg.parallel.timeout_s)} if self.cfg.parallel.timeout_s else {}
            if self.device.type == "cuda":
                dist.init_process_group("nccl", device_id=self.device, **timeout)
            else:
                dist.init_process_group("gloo", **timeout)
        if dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        validate(self.cfg, world_size=world)
        self.mesh = Mesh.from_world(world, self.cfg.parallel.sp_degree, rank)
        self.groups: Groups = build_groups(self.mesh)
        self.is_main = rank == 0
        torch.manual_seed(self.cfg.train.seed)

    def build_data(self) -> None:
        c = self.cfg
        if not c.data.path:
            raise LongctxError("config: data.path: required (a pack directory from `longctx pack`)")
        self.src = open_packs(c.data.path)
        validate(c, world_size=self.mesh.world_size, pack_length=self.src.pack_length)
        if c.data.mode == "pack" and self.src.mode != "pack":
            raise LongctxError(f"{self.src.path}: data.mode: pack needs packs, this directory holds sorted-batching "
                               "rows; set data.mode: sorted")
        self.resolve_layout()
        layout = get_layout(self.layout)
        if c.parallel.sp_degree > 1 and not layout.multi_document and any(len(s) > 1 for s in self.src.seq_lens):
            packed = " or ".join(name for name, row in LAYOUTS.items() if row.multi_document)
            raise LongctxError(f"{self.src.path}: parallel.layout: {layout.name} treats a pack as one causal "
                               f"sequence, but these packs hold several sequences; use parallel.layout: {packed}")
        self.data = StepData(self.src, c.data.mode, c.train.micro_batch, c.train.grad_accum, self.mesh.dp_degree,
                             self.mesh.dp_rank, seed=c.train.seed, shuffle=c.data.shuffle, batch_tokens=c.data.batch_tokens)

    def resolve_layout(self) -> None:
        """``self.layout`` / ``self.layout_degree``: ``parallel.layout`` made concrete (``auto`` chosen from
        the rows' declarations, the model's heads and the packs; the degree of the sub-groups a row
        declares, from its own config key or its default), then those sub-groups built by the mesh
        (collective: every rank resolves the same way)."""
        c = self.cfg
        sp, name = c.parallel.sp_degree, c.parallel.layout
        split = None if name == AUTO else get_layout(name).split
        degree = getattr(c.parallel, split.key) if split is not None else 0
        heads = kv_heads = 0
        choosing = sp > 1 and (name == AUTO or split is not None)  # else nothing to choose: as configured
        if choosing:
            heads, kv_heads = self.model_heads()
        choice = resolve_layout(name, degree, sp, heads, kv_heads, any(len(s) > 1 for s in self.src.seq_lens),
                                self.src.pack_length)
        self.layout, self.layout_degree = choice.layout, choice.degree
        if choosing and self.is_main:
            print(f"longctx train: parallel.layout {name}: {choice.reason}", flush=True)
        self.groups.sub = build_layout_groups(self.groups, get_layout(self.layout), self.layout_degree)

    def model_heads(self) -> tuple[int, int]:
        """(attention heads, KV heads) from ``model.path``'s config.json, before the model is loaded."""
        path = self.cfg.model.path
        try:
            mc = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise LongctxError(f"{path}: model.path: cannot read config.json to choose parallel.layout "
                               f"({str(err).splitlines()[0]})") from None
        heads = mc.num_attention_heads
        return heads, getattr(mc, "num_key_value_heads", None) or heads

    def attn_implementation(self) -> str:
        impl = self.cfg.model.attn_implementation
        if impl == "auto":
            impl = "longctx_ring" if self.cfg.parallel.sp_degree > 1 else "longctx_varlen"
        if impl.startswith("longctx"):
            register()  # the longctx_* names, with transformers
        elif self.cfg.parallel.sp_degree > 1:
            raise LongctxError(f"config: model.attn_implementation: {impl!r} cannot run sequence parallel "
                               "(parallel.sp_degree > 1); use longctx_ring or auto")
        return impl

    def check_model_path(self) -> None:
        """A local model.path is a checkpoint folder: config.json naming a model_type of a family longctx trains
        exactly (:func:`longctx.models.trainable_family`: no mixture of experts, no sliding window, no logit
        transform), safetensors weights (one line each, before the data and the process group are set up)."""
        path = self.cfg.model.path
        if not path:
            raise LongctxError("config: model.path: required (a Hugging Face checkpoint directory)")
        if not Path(path).is_dir():
            return  # a hub name or a missing directory: transformers' message when the model loads
        conf_path = Path(path) / "config.json"
        conf = read_json(conf_path, missing="missing (model.path is not a Hugging Face checkpoint folder)")
        if "model_type" not in conf:
            raise LongctxError(f"{conf_path}: model_type: missing (model.path: transformers cannot "
                               "tell which architecture this is)")
        source = f"{conf_path} (model.path)"
        refuse_moe(conf, source)  # on the file itself: before transformers parses a config of an undeclared family
        family_of(conf, source)
        trainable_family(AutoConfig.from_pretrained(path), source)  # sliding windows as transformers resolves them
        require_safetensors(path)
        check_model_weights(path)

    def build_model(self) -> None:
        c = self.cfg
        dtype = torch.bfloat16 if c.model.dtype == "bfloat16" else torch.float32
        try:
            self.model = AutoModelForCausalLM.from_pretrained(c.model.path, dtype=dtype, **SAFE_LOAD_KWARGS,
                                                              attn_implementation=self.attn_implementation())
        except OSError as err:
            raise LongctxError(f"{c.model.path}: model.path: cannot load ({str(err).splitlines()[0]})") from None
        self.family = trainable_family(self.model.config, f"{c.model.path} (model.path)")  # a hub name: first read here
        self.model.to(self.device).train()
        self.model.config.use_cache = False
        heads = getattr(self.model.config, "num_attention_heads", None)
        if c.parallel.sp_degree > 1 and heads:  # the layout's GQA constraint (e.g. a head-splitting layout)
            kv_heads = getattr(self.model.config, "num_key_value_heads", None) or heads
            why = get_layout(self.layout).check_heads(c.parallel.sp_degree, heads, kv_heads)
            if why:
                raise LongctxError(f"config: parallel.layout: {why}")
        if c.peft.enabled:  # first: checkpointing, tiling, offload and FSDP then apply to the adapted model
            self.peft_model, line = lora.wrap(self.model, c.peft, self.family)
            self.model.train()
            if self.is_main:
                print(f"longctx train: {line}", flush=True)
        if c.model.gradient_checkpointing:
            enable_checkpointing(self.model)
        if c.train.tiled_mlp:
            apply_tiled_mlp(self.model, c.train.mlp_tiles)
        if c.model.checkpoint_offload:
            apply_checkpoint_offload(self.model, pin_memory=self.device.type == "cuda")
        self.fsdp = c.parallel.fsdp and self.mesh.world_size > 1
        # The dtype policy (model.dtype: auto, on CUDA), torchtitan's: float32 weights, gradients and AdamW
        # states; bf16 compute, by FSDP2's MixedPrecisionPolicy when sharded (bf16 all-gathers, float32
        # reduce-scatter), else by autocast. longctx.plan models exactly this (master_weights: params).
        mixed = c.model.dtype == "auto" and self.device.type == "cuda"
        autocast = torch.bfloat16 if mixed and not self.fsdp else None
        self.step_opts = StepOptions(loss_mode=c.train.loss, loss_chunk=c.train.loss_chunk, layout=self.layout,
                                     grad_clip=c.optim.grad_clip, autocast_dtype=autocast,
                                     pad_token_id=self.src.pad_token_id, reduce_grads=not self.fsdp)
        self.loss_module = LMLoss(self.model, self.step_opts)
        if self.fsdp:
            apply_fsdp(self.loss_module, self.model, self.device.type, self.mesh.world_size, mixed_precision=mixed)

    def build_optimizer(self) -> None:
        o, steps = self.cfg.optim, self.cfg.train.steps
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, foreach=False)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: warmup_cosine(s, o.warmup_steps, steps, o.min_lr_ratio))

    def check_plan(self) -> None:
        """Ask longctx.plan whether the run fits in GPU memory; refuse (before loading weights) unless ``force``."""
        c = self.cfg
        mem = c.plan_gpu_mem_gib
        if mem == 0 and self.device.type == "cuda":
            mem = torch.cuda.get_device_properties(self.device).total_memory / 2**30
        if mem == 0:
            return  # CPU without an explicit budget: nothing to check against
        config = AutoConfig.from_pretrained(c.model.path)
        shape = shape_from_config(config, Path(c.model.path).name)
        plus = lora.embeddings_norms_on(c.peft, config)[0] if c.peft.enabled else False  # auto: the RoPE decides
        run = run_from_train_config(c, shape, self.src.pack_length, self.mesh.world_size, self.device.type, mem,
                                   layout=self.layout, embeddings_norms=plus)
        result = plan_run(shape, run)
        if self.is_main:
            print(f"longctx train: plan: {result.message()}", flush=True)
        if not result.fits and not c.force:
            raise LongctxError(f"config: plan_gpu_mem_gib/force: the planner predicts this run does not fit "
                               f"({result.total_bytes / 2**30:.2f} GiB > {mem:.2f} GiB per GPU); enable "
                               "model.gradient_checkpointing, raise parallel.sp_degree, or set force: true")

    @property
    def out(self) -> Path:
        return Path(self.cfg.checkpoint.out)

    def _choose_checkpoint(self) -> tuple[Path | None, list[tuple[Path, str]]]:
        """Rank 0 verifies the checkpoints (hashing every file once) and tells the other ranks its choice."""
        root = self.out / "checkpoints"
        box: list[Any] = [None]
        if self.is_main:
            path, rejected = ckpt.choose_checkpoint(root)
            box = [(str(path) if path else None, [(str(p), why) for p, why in rejected])]
        if self.groups.world is not None:
            dist.broadcast_object_list(box, src=0)
        path_s, rejected_s = box[0]
        return (Path(path_s) if path_s else None), [(Path(p), why) for p, why in rejected_s]

    def check_config_change(self, path: Path, state: dict) -> None:
        """Refuse to resume with a config that changes the result, unless checkpoint.allow_config_change."""
        saved = state.get("config")
        if not isinstance(saved, dict):
            return  # a checkpoint from before configs were recorded: nothing to compare with
        changes = config_changes(saved, self.cfg)
        if not changes:
            return
        if not self.cfg.checkpoint.allow_config_change:
            raise LongctxError(f"{path}: resuming with a changed config: {describe_changes(changes)}; rerun with the "
                               f"saved values (see {self.out / 'config.yaml'}), or pass --set "
                               "checkpoint.allow_config_change=true to continue with the new ones")
        if self.is_main:
            print(f"longctx train: resuming with a changed config (checkpoint.allow_config_change): "
                  f"{describe_changes(changes)}", flush=True)

    def maybe_resume(self) -> None:
        if not self.cfg.checkpoint.resume:
            return
        path, rejected = self._choose_checkpoint()
        if self.is_main:
            for bad, why in rejected:
                print(f"longctx train: warning: skipping checkpoint {bad}: {why}", flush=True)
        if path is None:
            if rejected:
                whys = "; ".join(f"{p.name}: {why}" for p, why in rejected)
                raise LongctxError(f"{self.out / 'checkpoints'}: no intact checkpoint to resume from ({whys}); "
                                   "set checkpoint.resume=false to start over")
            return
        try:
            state = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # verified a moment ago: only a concurrent change gets here
            raise LongctxError(f"{path / 'trainer.json'}: cannot read ({err})") from None
        self.check_config_change(path, state)
        state = ckpt.load_checkpoint(path, self.model, self.optimizer, self.scheduler, self.mesh.world_size, self.mesh.rank,
                                     sharded=self.fsdp, trainable_only=self.peft_model is not None)
        self.step, self.position = int(state["step"]), int(state["position"])
        if state.get("stopped_early") == "eval.stop_at" and self.cfg.eval.stop_at is not None:
            self.stopped_early = "eval.stop_at"  # that run reached its target: it is finished
        if self.is_main:
            note = " (newer ones skipped, see the warnings above)" if rejected else ""
            print(f"longctx train: resumed from {path} (step {self.step}){note}", flush=True)

    def setup(self) -> None:
        if not self.cfg.checkpoint.out:
            raise LongctxError("config: checkpoint.out: required (the run directory)")
        check_out_vs_inputs(self.out, [self.cfg.model.path, self.cfg.data.path], flag="config: checkpoint.out:")
        check_can_create(self.out, flag="config: checkpoint.out:")
        self.check_model_path()
        self.setup_distributed()
        self.build_data()
        self.check_plan()
        self.build_model()
        self.build_optimizer()
        self.maybe_resume()
        if self.is_main:
            ckpt.remove_partial_saves(self.out / "checkpoints")
            ckpt.remove_partial_saves(self.out, name=r"final")
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", dump_yaml(self.cfg))
        self.build_eval()

    def build_eval(self) -> None:
        """Prepare evaluation during training (``eval:``): prompts and text once, where evaluation runs."""
        if not self.cfg.eval.enabled:
            return
        # FSDP forwards are collective, so every rank evaluates; otherwise rank 0 alone (the others wait)
        self.evaluator = TrainEval(self.cfg.eval, self.cfg.model.path, self.out, is_main=self.is_main,
                                   runs_here=self.is_main or self.fsdp, autocast_dtype=self.step_opts.autocast_dtype)

    # ---------------------------------------------------------------- loop
    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def install_signal_handlers(self) -> dict:
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass
        return old

    def agree_to_stop(self) -> bool:
        """Every rank stops together if any rank got a signal (an all-reduce MAX on a flag)."""
        flag = torch.tensor([1.0 if self.stop_requested else 0.0], device=self.device)  # NCCL needs a CUDA tensor
        if self.groups.world is not None:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def train_one_step(self) -> dict:
        batches = self.data.micro_batches(self.position)
        stats = train_step(self.loss_module, self.optimizer, self.scheduler, batches, self.groups, self.step_opts, self.device)
        self.position += self.data.per_step
        self.step += 1
        stats["epoch"] = self.data.epoch(self.position)
        return stats

    def save(self) -> None:
        ckpt.save_checkpoint(self.out / "checkpoints", self.step, self.model, self.optimizer, self.scheduler,
                             {"position": self.position, "world_size": self.mesh.world_size, "config": self.cfg.to_dict(),
                              **({"stopped_early": self.stopped_early} if self.stopped_early else {})},
                             self.cfg.checkpoint.keep_last,
                             sharded=self.fsdp, trainable_only=self.peft_model is not None)

    def _weights_finite(self) -> bool:
        """Every parameter finite on every rank (FSDP shards are checked where they live)."""
        local = [p.detach().to_local() if hasattr(p, "to_local") else p.detach() for p in self.model.parameters()]
        flag = torch.stack([torch.isfinite(t).all() for t in local if t.numel()]).all().float().reshape(1)
        if self.fsdp and self.groups.world is not None:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def stop_if_not_finite(self, stats: dict) -> None:
        """Stop (no checkpoint, no export) at the first step whose loss, gradient or weights are NaN/inf.

        The loss and gradient norm are already global (identical on every rank), so all ranks stop together.
        """
        what = None
        if stats.get("normaliser", 0) > 0 and not math.isfinite(stats["loss"]):
            what = f"the loss is {stats['loss']}"
        elif not math.isfinite(stats.get("grad_norm", 0.0)):
            what = f"the gradient norm is {stats['grad_norm']}"
        elif not self._weights_finite():
            what = "the weights hold NaN/inf"
        if what is not None:
            raise LongctxError(f"step {self.step}: {what}; training stopped without saving or exporting (the "
                               f"checkpoints in {self.out / 'checkpoints'} are from before): lower optim.lr, "
                               "set optim.grad_clip, or check the data")

    # ---------------------------------------------------------------- evaluation
    @contextlib.contextmanager
    def _unsharded(self):
        """FSDP: gather the root unit's parameters (embeddings, norm, head) for calls that bypass LMLoss."""
        if not self.fsdp:
            yield
            return
        # FSDP2 makes the first module to run forward the root; an evaluation before the first training
        # step would make a decoder layer the root, so settle the root (LMLoss) first (no public API).
        self.loss_module._get_fsdp_state()._lazy_init()
        self.loss_module.unshard()
        try:
            yield
        finally:
            self.loss_module.reshard()

    def _from_main(self, flag: bool) -> bool:
        """Rank 0's flag on every rank; the broadcast is also where the other ranks wait for its evaluation."""
        box = torch.tensor([1.0 if flag else 0.0], device=self.device)
        if self.groups.world is not None:
            dist.broadcast(box, src=0)
        return bool(box.item())

    def evaluate(self, metrics: Metrics) -> bool:
        """Evaluate now (step ``self.step``), record it on rank 0; True when ``eval.stop_at`` is reached."""
        ev, reached = self.evaluator, False
        if self.is_main and ev.base is None and self.step > 0:  # resumed: the base values of step 0
            ev.records = read_eval_records(self.out / "metrics.jsonl")
            if not ev.load_base():
                ev.base_from_checkpoint(self.device)
        if ev.runs_here:
            with self._unsharded():
                measured, seconds = ev.measure(self.model, synced=self.fsdp)
            if self.is_main:
                if self.step == 0:
                    ev.set_base(measured)
                rec = ev.record(self.step, measured, seconds)
                metrics.record(rec)
                ev.plot()
                print(f"longctx train: {summary_line(rec)}", flush=True)
                reached = self.step > 0 and ev.reached(rec)
        return self._from_main(reached)

    # ---------------------------------------------------------------- loop
    def loop(self) -> str:
        c = self.cfg
        metrics = Metrics(self.out, c.train.steps, self.step, enabled=self.is_main, progress=c.log.progress,
                          tensorboard=c.log.tensorboard)
        status = "done"
        try:
            if self.evaluator is not None and self.step == 0:
                self.evaluate(metrics)  # the base: first point of the curves, reference of the guard
            while self.step < c.train.steps and self.stopped_early is None:
                stats = self.train_one_step()
                line = metrics.log(self.step, stats, write=self.step % c.log.every == 0 or self.step == c.train.steps)
                self.history.append(line)
                self.stop_if_not_finite(stats)
                if self.evaluator is not None and self.evaluator.due(self.step, c.train.steps) and self.evaluate(metrics):
                    self.stopped_early = "eval.stop_at"
                for cb in self.callbacks:
                    cb(self, self.step, line)
                if self.stopped_early:
                    if self.is_main:
                        print(f"longctx train: eval.stop_at {c.eval.stop_at} reached at step {self.step}; "
                              "saving and exporting", flush=True)
                    break
                if self.agree_to_stop():
                    self.save()
                    status = "interrupted"
                    break
                if c.checkpoint.every and self.step % c.checkpoint.every == 0 and self.step < c.train.steps:
                    self.save()
        finally:
            metrics.close()
        return status

    def export(self) -> Path | None:
        """Write out/final (collective): the model, or with LoRA the merged model or the adapter folder."""
        path, state = None, None
        if self.fsdp:
            state = full_state(self.model)[0]
        if self.peft_model is not None:
            keep = lora.trainable_parameters(self.model)
            state = {k: v.detach().cpu() for k, v in (state.items() if state is not None else keep.items()) if k in keep}
        if self.is_main and self.peft_model is not None:
            c = self.cfg
            path = lora.export_lora(c.model.path, c.peft, self.family, self.model.config, state, self.out / "final",
                                    c.checkpoint.export)
        elif self.is_main:
            path = export_hf(self.model, self.cfg.model.path, self.out / "final", state_dict=state)
        if self.groups.world is not None:
            dist.barrier()
        return path

    def run(self) -> dict:
        """Set up, resume, train to ``train.steps`` (or a signal), checkpoint and export; returns a summary."""
        t0 = time.perf_counter()
        self.setup()
        old = self.install_signal_handlers()
        try:
            status = self.loop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        exported = None
        if status == "done":
            self.save()
            if self.cfg.checkpoint.export != "none":
                path = self.export()
                exported = str(path) if path is not None else None
        return {"status": status, "step": self.step, "history": self.history, "out": str(self.out),
                "exported": exported, "seconds": time.perf_counter() - t0, "stopped_early": self.stopped_early,
                "eval": self.evaluator.records if self.evaluator is not None else []}
