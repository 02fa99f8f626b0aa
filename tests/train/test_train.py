"""Trainer pieces on one process: config, mesh math, data order, loss weighting, checkpoints, signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from longctx.core.errors import LongctxError
from longctx.train.config import RunConfig, load_config, validate
from longctx.distributed.mesh import Mesh
from longctx.train.parallelize import checkpointing_enabled

from support import ROOT, train_ranks as tr


# ---------------------------------------------------------------- config
def test_set_overrides_accept_dotted_and_unique_bare_keys():
    """`--set optim.lr=..` and the bare `lr=..` both reach OptimConfig.lr; YAML types are parsed."""
    cfg = load_config(None, ["lr=1e-5", "parallel.sp_degree=4", "model.gradient_checkpointing=true"])
    assert cfg.optim.lr == 1e-5 and cfg.parallel.sp_degree == 4 and cfg.model.gradient_checkpointing is True


def test_unknown_key_error_names_the_key(tmp_path):
    """A typo in the YAML fails up front with the file and the dotted key in the message."""
    (tmp_path / "run.yaml").write_text("optim:\n  lrr: 1e-5\n")
    with pytest.raises(LongctxError, match=r"run\.yaml.*optim\.lrr"):
        load_config(tmp_path / "run.yaml")


def test_wrong_type_error_names_the_field():
    """A non-integer sp_degree is refused naming parallel.sp_degree."""
    with pytest.raises(LongctxError, match="parallel.sp_degree"):
        load_config(None, ["parallel.sp_degree=two"])


def test_sp_degree_not_dividing_world_size_is_refused():
    """sp_degree 3 on 4 ranks cannot form sequence-parallel groups."""
    with pytest.raises(LongctxError, match="parallel.sp_degree.*does not divide"):
        validate(load_config(None, ["parallel.sp_degree=3"]), world_size=4)


def test_pack_length_not_divisible_for_zigzag_is_refused():
    """zigzag splits a pack into 2*sp chunks: 100 tokens cannot be split for sp 4 (unit 8), varlen can (unit 4)."""
    cfg = load_config(None, ["parallel.sp_degree=4", "parallel.layout=zigzag"])
    with pytest.raises(LongctxError, match="parallel.layout.*100.*8"):
        validate(cfg, world_size=4, pack_length=100)
    cfg.parallel.layout = "varlen"
    validate(cfg, world_size=4, pack_length=100)


def test_sorted_batching_with_sequence_parallel_is_refused():
    """Sorted batches have rows of different lengths, which ring sharding cannot split."""
    with pytest.raises(LongctxError, match="data.mode"):
        load_config(None, ["data.mode=sorted", "parallel.sp_degree=2"])


def test_packed_data_mode_is_read_as_pack_with_a_deprecation_warning():
    """Old configs say data.mode: packed (the manifest says pack): still accepted, normalised, and warned about."""
    with pytest.warns(FutureWarning, match="data.mode.*'packed'.*deprecated.*'pack'"):
        cfg = load_config(None, ["data.mode=packed"])
    assert cfg.data.mode == "pack"


def test_every_config_file_parses_against_the_dataclasses():
    """Recipes in configs/ can't rot: each one loads and validates."""
    files = sorted((ROOT / "configs").glob("*.yaml"))
    train_files = [f for f in files if "model:" in f.read_text() and "train:" in f.read_text()]
    assert train_files
    for f in train_files:
        assert isinstance(load_config(f), RunConfig), f


def test_train_help_shows_every_config_key_description_whole():
    """`longctx train --help` wraps long key descriptions instead of cutting them with "..."."""
    from longctx.cli.train import build_parser
    from longctx.train.config import field_docs

    flat = " ".join(build_parser().format_help().split())
    for key, doc in field_docs().items():
        assert doc in flat, key


# ---------------------------------------------------------------- mesh
def test_mesh_groups_partition_the_world():
    """Every rank is in exactly one SP group and one DP group; SP groups are contiguous ranks."""
    m = Mesh.from_world(8, 4)
    assert m.all_sp_groups() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert m.all_dp_groups() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    r = Mesh.from_world(8, 4, rank=6)
    assert (r.dp_rank, r.sp_rank, r.dp_degree) == (1, 2, 2)


def test_mesh_with_a_wrong_product_raises():
    """A degree that does not divide the world size is refused without any process group."""
    with pytest.raises(LongctxError, match="parallel.sp_degree"):
        Mesh.from_world(6, 4)


# ---------------------------------------------------------------- data
def test_two_dp_ranks_read_the_units_of_one_rank_with_double_accumulation(packs):
    """DP=2 x accum=1 reads, per step, the same packs as DP=1 x accum=2 (the base of the DP equivalence)."""
    from longctx.train.data import StepData, open_packs

    src = open_packs(packs)
    one = StepData(src, "pack", 1, 2, 1, 0, seed=3)
    two = [StepData(src, "pack", 1, 1, 2, d, seed=3) for d in range(2)]
    for pos in (0, 2, 4, 6):
        assert sorted(sum(one.step_units(pos), [])) == sorted(sum([s.step_units(pos)[0] for s in two], []))


def test_data_order_depends_only_on_seed_and_position(packs):
    """Resuming at a position yields the very units a fresh reader yields there; epochs are reshuffled."""
    from longctx.train.data import StepData, open_packs

    src = open_packs(packs)
    a, b = StepData(src, "pack", 1, 1, 1, 0, seed=5), StepData(src, "pack", 1, 1, 1, 0, seed=5)
    seq = [a.step_units(p) for p in range(12)]
    assert [b.step_units(p) for p in range(6, 12)] == seq[6:]
    assert sorted(u[0][0] for u in seq[:4]) == [0, 1, 2, 3]  # one epoch = a permutation


def test_sorted_batching_groups_similar_lengths_within_the_token_budget(packs):
    """Sorted mode: batches respect rows x longest <= budget and waste less padding than naive batching."""
    from longctx.train.data import StepData, open_packs

    src = open_packs(packs)
    def waste(mode):
        d = StepData(src, mode, 1, 1, 1, 0, seed=0, batch_tokens=128)
        total = 0
        for unit in d.units:
            lens = [s[2] for s in unit]
            assert len(lens) * max(lens) <= 128 or len(lens) == 1
            total += len(lens) * max(lens) - sum(lens)
        assert sum(len(u) for u in d.units) == 12  # no sequence lost
        return total
    assert waste("sorted") < waste("padded")


def test_sorted_mode_batches_are_packings_sorted_batches_in_length_order(packs):
    """Sorted mode uses packing's sorted_batches: longest first (ties in file order), cut by rows x longest <= budget,
    batches left in that order (the trainer shuffles them per epoch)."""
    from longctx.train.data import StepData, open_packs, split_sequences

    src = open_packs(packs)
    seqs = split_sequences(src)
    lengths = [n for _, _, n in seqs]
    for budget in (60, 128, 300):
        want, cur = [], []
        for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # the former trainer-side grouping
            if cur and max(lengths[j] for j in cur + [i]) * (len(cur) + 1) > budget:
                want.append(cur)
                cur = []
            cur.append(i)
        want.append(cur)
        got = StepData(src, "sorted", 1, 1, 1, 0, batch_tokens=budget).units
        assert got == [[seqs[i] for i in b] for b in want]


def test_warmup_then_cosine_reaches_the_floor():
    """LR multiplier: linear warmup to 1, cosine down to min_lr_ratio at the last step."""
    from longctx.train.trainer import warmup_cosine

    assert warmup_cosine(0, 4, 20, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(20, 4, 20, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(12, 4, 20, 0.1) == pytest.approx(0.55)


# ---------------------------------------------------------------- loss
def _per_sequence_losses(model_dir: Path, packs: Path) -> list[tuple[float, int]]:
    """Oracle: every sequence alone through plain transformers (eager, float64, full logits): (CE sum, targets)."""
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float64)
    out = []
    for row in load_from_disk(str(packs)):
        start = 0
        for n in row["seq_lens"]:
            ids = torch.tensor(row["input_ids"][start:start + n])[None]
            labels = torch.tensor(row["labels"][start:start + n])[None]
            start += n
            with torch.no_grad():
                logits = model(input_ids=ids).logits
            ce = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
            out.append((ce.item(), int((labels[0, 1:] != -100).sum())))
    return out


# All 12 sequences in one optimizer step: 2 micro-batches x 2 packs, or one sorted / padded batch.
ONE_STEP = {"pack": {"train.micro_batch": 2, "train.grad_accum": 2},
            "sorted": {"data.batch_tokens": 100000}, "padded": {"data.batch_tokens": 100000}}


@pytest.mark.parametrize("mode", ["pack", "sorted", "padded"])
def test_weighted_step_loss_equals_the_unpacked_per_sequence_mean(tiny_llama, packs, tmp_path, mode):
    """LongAlign weighting: the step loss is the mean over sequences of each sequence's mean CE, in every data mode."""
    from longctx.train.trainer import Trainer

    cfg = tr.base_config(tiny_llama, packs, tmp_path / "run", **ONE_STEP[mode],
                         **{"data.mode": mode, "data.shuffle": False, "checkpoint.export": False})
    out = Trainer(cfg).run()
    oracle = [s / n for s, n in _per_sequence_losses(tiny_llama, packs)]
    assert out["history"][0]["normaliser"] == len(oracle) == 12
    assert out["history"][0]["loss"] == pytest.approx(sum(oracle) / len(oracle), rel=1e-5)


def test_token_mode_step_loss_equals_the_mean_over_all_target_tokens(tiny_llama, packs, tmp_path):
    """train.loss: token divides the summed CE by the global number of target tokens (long sequences weigh more)."""
    from longctx.train.trainer import Trainer

    cfg = tr.base_config(tiny_llama, packs, tmp_path / "run", **ONE_STEP["pack"],
                         **{"train.loss": "token", "data.shuffle": False, "checkpoint.export": False})
    out = Trainer(cfg).run()
    per_seq = _per_sequence_losses(tiny_llama, packs)
    assert out["history"][0]["loss"] == pytest.approx(sum(s for s, _ in per_seq) / sum(n for _, n in per_seq), rel=1e-5)


def test_gradient_checkpointing_does_not_change_the_step(tiny_llama, packs, tmp_path):
    """Recomputing layers in backward gives the same loss and parameters after two steps."""
    sets = {"train.steps": 2, "checkpoint.export": False}
    _, plain = tr.run_capturing(tr.base_config(tiny_llama, packs, tmp_path / "a", **sets))
    t, ckpt = tr.run_capturing(tr.base_config(tiny_llama, packs, tmp_path / "b", **sets,
                                              **{"model.gradient_checkpointing": True}))
    assert checkpointing_enabled(t.model)  # under either transformers name (5.17 has only the old one)
    assert ckpt["losses"] == pytest.approx(plain["losses"], rel=1e-6)
    for k, v in plain["params"].items():
        assert abs(ckpt["params"][k] - v).max() <= 1e-6, k


# ---------------------------------------------------------------- checkpoints, signals, export
def test_checkpoints_keep_only_the_last_n(tiny_llama, packs, tmp_path):
    """Every 1 step for 4 steps with keep_last 2: only step 3 and 4 remain, and resume starts at 4."""
    from longctx.train.checkpoint import list_checkpoints
    from longctx.train.trainer import Trainer

    cfg = tr.base_config(tiny_llama, packs, tmp_path / "run", **{"train.steps": 4, "checkpoint.every": 1,
                                                                 "checkpoint.keep_last": 2, "checkpoint.export": False})
    Trainer(cfg).run()
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [3, 4]


def test_a_crash_while_saving_leaves_no_checkpoint_that_looks_complete(tiny_llama, packs, tmp_path, monkeypatch):
    """An exception midway through writing a checkpoint leaves no step-* directory behind."""
    from longctx.train import checkpoint as ck
    from longctx.train.trainer import Trainer

    cfg = tr.base_config(tiny_llama, packs, tmp_path / "run", **{"checkpoint.export": False})
    t = Trainer(cfg)
    t.setup()
    real_save = torch.save

    def flaky(obj, f, *a, **k):
        if str(f).endswith("optimizer.pt"):
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ck.torch, "save", flaky)
    with pytest.raises(LongctxError, match="step-00000000: cannot write: disk full"):  # one line, not a traceback
        t.save()
    assert ck.list_checkpoints(tmp_path / "run" / "checkpoints") == []
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []  # no temporary left behind


def test_sigterm_saves_a_checkpoint_and_stops_cleanly(tiny_llama, packs, tmp_path):
    """SIGTERM during step 2 of 6: the run returns 'interrupted' after step 2 with checkpoint 2 on disk."""
    from longctx.train.checkpoint import list_checkpoints
    from longctx.train.trainer import Trainer

    cfg = tr.base_config(tiny_llama, packs, tmp_path / "run", **{"train.steps": 6})
    def cb(trainer, step, line):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    out = Trainer(cfg, callbacks=[cb]).run()
    assert out["status"] == "interrupted" and out["step"] == 2
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [2]
    assert not (tmp_path / "run" / "final").exists()


def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(tiny_llama, packs, tmp_path):
    """SIGKILL right after step 3 (checkpoints every 2), resume to step 5: weights equal a straight 5-step run."""
    sets = {"train.steps": 5, "checkpoint.every": 2, "optim.warmup_steps": 2, "checkpoint.export": False}
    summary, resumed, straight = tr.killed_resumed_and_straight(
        tr.base_config(tiny_llama, packs, tmp_path / "killed", **sets),
        tr.base_config(tiny_llama, packs, tmp_path / "straight", **sets), kill_after=3)
    assert summary["history"][0]["step"] == 3  # restarted from checkpoint 2
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_planner_refuses_a_run_that_cannot_fit_unless_forced(tiny_llama, packs, tmp_path):
    """With a 1 MiB memory budget the planner refuses the run; force: true trains anyway."""
    from longctx.train.trainer import Trainer

    sets = {"plan_gpu_mem_gib": 2**-10, "checkpoint.export": False}
    with pytest.raises(LongctxError, match="does not fit"):
        Trainer(tr.base_config(tiny_llama, packs, tmp_path / "a", **sets)).run()
    assert Trainer(tr.base_config(tiny_llama, packs, tmp_path / "b", force=True, **sets)).run()["step"] == 1


def test_zigzag_layout_with_multi_sequence_packs_is_refused(tiny_llama, packs, tmp_path):
    """zigzag ring attention is one causal sequence per pack: packed documents would attend to each other."""
    from longctx.train.trainer import Trainer

    t = Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **{"parallel.sp_degree": 1}))
    t.setup_distributed()
    t.cfg.parallel.sp_degree, t.cfg.parallel.layout = 2, "zigzag"
    t.mesh = Mesh.from_world(2, 2)
    with pytest.raises(LongctxError, match="parallel.layout.*varlen"):
        t.build_data()


def test_checkpoint_files_load_without_running_pickled_code(tiny_llama, packs, tmp_path):
    """A resumable checkpoint holds safetensors weights and weights_only-loadable states: no pickle can run code."""
    import random as pyrandom

    import numpy as np
    from safetensors.torch import load_file

    from longctx.train.checkpoint import latest_checkpoint, rng_state, set_rng_state
    from longctx.train.trainer import Trainer

    Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **{"checkpoint.export": False})).run()
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert not (ckpt / "model.pt").exists()
    assert load_file(ckpt / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        torch.load(ckpt / name, weights_only=True)  # raises on anything but tensors and plain data
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), pyrandom.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), pyrandom.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


@pytest.mark.parametrize("field, value", [("final_logit_softcapping", 30.0), ("logit_scale", 0.0625)])
def test_a_model_with_transformed_logits_is_refused_not_trained_wrong(field, value):
    """The chunked loss computes plain hidden @ W^T logits: soft-capped or scaled logits are refused by name."""
    from types import SimpleNamespace

    from longctx.train.step import check_plain_output_head

    check_plain_output_head(SimpleNamespace(final_logit_softcapping=None, logit_scale=1.0))  # plain heads pass
    with pytest.raises(LongctxError, match=field):
        check_plain_output_head(SimpleNamespace(**{field: value}))
