"""Training runs under faults and hostile input: changed configs on resume, corrupt checkpoints,
non-finite optimizer values and runs, pickle-only weights, kill leftovers (issue #16)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from longctx.core.errors import LongctxError
from longctx.train.config import RunConfig, config_changes, load_config
from support import train_ranks as tr
from support.train_faults import NO_EXPORT, copy_run


# ---------------------------------------------------------------- resuming with a changed config
def test_resuming_with_a_changed_learning_rate_is_refused_naming_the_key(tiny_llama, packs, two_step_run, tmp_path):
    from longctx.train.trainer import Trainer

    run = copy_run(two_step_run, tmp_path / "run")
    cfg = tr.base_config(tiny_llama, packs, run, **{"train.steps": 2, "checkpoint.every": 1, "optim.lr": 2e-3}, **NO_EXPORT)
    with pytest.raises(LongctxError, match=r"changed config: optim.lr 0.001 -> 0.002;.*allow_config_change=true") as err:
        Trainer(cfg).run()
    assert "\n" not in str(err.value)


def test_allow_config_change_resumes_and_logs_what_changed(tiny_llama, packs, two_step_run, tmp_path, capsys):
    from longctx.train.trainer import Trainer

    run = copy_run(two_step_run, tmp_path / "run")
    cfg = tr.base_config(tiny_llama, packs, run, **{"train.steps": 3, "optim.lr": 2e-3,
                                                    "checkpoint.allow_config_change": True}, **NO_EXPORT)
    out = Trainer(cfg).run()
    assert out["history"][0]["step"] == 3
    log = capsys.readouterr().out
    assert "changed config (checkpoint.allow_config_change): optim.lr 0.001 -> 0.002, train.steps 2 -> 3" in log


def test_sp_degree_data_path_and_steps_changes_are_named():
    saved = RunConfig().to_dict()
    cfg = RunConfig()
    cfg.parallel.sp_degree, cfg.data.path, cfg.train.steps = 2, "/other/packs", 200
    assert [k for k, _, _ in config_changes(saved, cfg)] == ["data.path", "parallel.sp_degree", "train.steps"]


def test_logging_and_checkpoint_cadence_may_change_on_resume():
    saved = RunConfig().to_dict()
    cfg = RunConfig()
    cfg.log.progress, cfg.log.tensorboard, cfg.log.every = False, False, 7
    cfg.checkpoint.every, cfg.checkpoint.keep_last, cfg.checkpoint.export = 5, 9, False
    cfg.model.gradient_checkpointing, cfg.force = True, True
    assert config_changes(saved, cfg) == []


def test_the_same_path_written_differently_is_no_change(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = RunConfig().to_dict()
    saved["data"]["path"] = str(tmp_path / "packs")
    cfg = RunConfig()
    cfg.data.path = "./packs"
    assert config_changes(saved, cfg) == []


# ---------------------------------------------------------------- corrupt checkpoints
def _truncate_weights(ck: Path) -> None:
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])


def _garbage(name: str):
    def corrupt(ck: Path) -> None:
        size = (ck / name).stat().st_size
        (ck / name).write_bytes(b"\x80garbage".ljust(size, b"!"))  # same size: only the hash tells
    return corrupt


def _trainer_json_without_step(ck: Path) -> None:
    """Hand-edited consistently: the manifest's hash matches, the step is simply not there."""
    from longctx.train.checkpoint import MANIFEST, _sha256

    state = json.loads((ck / "trainer.json").read_text())
    del state["step"]
    (ck / "trainer.json").write_text(json.dumps(state))
    manifest = json.loads((ck / MANIFEST).read_text())
    manifest["files"]["trainer.json"] = {"bytes": (ck / "trainer.json").stat().st_size,
                                         "sha256": _sha256(ck / "trainer.json")}
    (ck / MANIFEST).write_text(json.dumps(manifest))


CORRUPTIONS = {
    "truncated weights": (_truncate_weights, "model.safetensors has"),
    "garbage optimizer": (_garbage("optimizer.pt"), "optimizer.pt changed since it was saved"),
    "garbage scheduler": (_garbage("scheduler.pt"), "scheduler.pt changed since it was saved"),
    "trainer.json without step": (_trainer_json_without_step, "trainer.json has no step"),
    "no manifest": (lambda ck: (ck / "manifest.json").unlink(), "no manifest.json"),
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_corrupt_checkpoint_fails_verification_naming_why(two_step_run, tmp_path, kind):
    from longctx.train.checkpoint import verify_checkpoint

    run = copy_run(two_step_run, tmp_path / "run")
    ck = run / "checkpoints" / "step-00000002"
    assert verify_checkpoint(ck) is None
    corrupt, why = CORRUPTIONS[kind]
    corrupt(ck)
    assert why in verify_checkpoint(ck)


@pytest.mark.parametrize("kind", ["truncated weights", "garbage optimizer"])
def test_resume_falls_back_to_the_previous_complete_checkpoint_with_a_warning(tiny_llama, packs, two_step_run, tmp_path,
                                                                             capsys, kind):
    from longctx.train.trainer import Trainer

    run = copy_run(two_step_run, tmp_path / "run")
    CORRUPTIONS[kind][0](run / "checkpoints" / "step-00000002")
    cfg = tr.base_config(tiny_llama, packs, run, **{"train.steps": 2, "checkpoint.every": 1}, **NO_EXPORT)
    out = Trainer(cfg).run()
    assert out["history"][0]["step"] == 2  # redone from checkpoint 1
    log = capsys.readouterr().out
    assert f"skipping checkpoint {run / 'checkpoints' / 'step-00000002'}: {CORRUPTIONS[kind][1]}" in log
    assert "resumed from" in log and "step-00000001" in log


def test_no_intact_checkpoint_left_is_a_one_line_error(tiny_llama, packs, two_step_run, tmp_path):
    from longctx.train.trainer import Trainer

    run = copy_run(two_step_run, tmp_path / "run")
    _truncate_weights(run / "checkpoints" / "step-00000001")
    _garbage("scheduler.pt")(run / "checkpoints" / "step-00000002")
    cfg = tr.base_config(tiny_llama, packs, run, **{"train.steps": 2}, **NO_EXPORT)
    with pytest.raises(LongctxError, match="no intact checkpoint.*step-00000002: scheduler.pt.*step-00000001: "
                                           "model.safetensors.*checkpoint.resume=false") as err:
        Trainer(cfg).run()
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- non-finite values
@pytest.mark.parametrize("key, value", [("optim.lr", ".inf"), ("optim.weight_decay", ".nan"), ("optim.grad_clip", ".nan"),
                                        ("optim.beta1", "1.0"), ("optim.beta2", "-0.1"), ("optim.eps", "0"),
                                        ("optim.eps", ".nan"), ("optim.weight_decay", "-1"), ("plan_gpu_mem_gib", ".inf")])
def test_non_finite_or_invalid_optimizer_values_are_refused_naming_the_key(key, value):
    with pytest.raises(LongctxError, match=rf"^config: {key}: must be") as err:
        load_config(None, [f"{key}={value}"])
    assert "\n" not in str(err.value)


def test_a_run_whose_loss_becomes_nan_stops_naming_the_step_without_export(tiny_llama, packs, tmp_path):
    from longctx.train.checkpoint import list_checkpoints
    from longctx.train.trainer import Trainer

    def poison(trainer, step, line):
        if step == 1:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    cfg = tr.base_config(tiny_llama, packs, tmp_path / "run", **{"train.steps": 3, "checkpoint.every": 1})
    with pytest.raises(LongctxError, match=r"^step 2: the loss is nan; training stopped without saving or exporting"):
        Trainer(cfg, callbacks=[poison]).run()
    assert not (tmp_path / "run" / "final").exists()
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [1]


def test_weights_that_become_inf_stop_the_run_naming_the_step(tiny_llama, packs, tmp_path):
    """A finite loss but inf weights (overflow in the update) is caught too."""
    from longctx.train.trainer import Trainer

    t = Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **{"train.steps": 3}))
    t.setup()
    t.step = 4
    with torch.no_grad():
        list(t.model.parameters())[-1].view(-1)[0] = float("inf")
    with pytest.raises(LongctxError, match="^step 4: the weights hold NaN/inf"):
        t.stop_if_not_finite({"loss": 1.0, "normaliser": 1.0, "grad_norm": 1.0})


# ---------------------------------------------------------------- pickle-only weights
def test_train_refuses_pickle_only_weights(tiny_llama, packs, tmp_path):
    from safetensors.torch import load_file

    from longctx.train.trainer import Trainer

    model = tmp_path / "pickled"
    shutil.copytree(tiny_llama, model)
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    with pytest.raises(LongctxError, match=r"only pickle weights \(pytorch_model.bin\)"):
        Trainer(tr.base_config(model, packs, tmp_path / "run", **NO_EXPORT)).run()


# ---------------------------------------------------------------- kill leftovers, messages
def test_metrics_do_not_repeat_steps_after_a_resume(tiny_llama, packs, tmp_path):
    """Steps 1-3 logged, only checkpoints 1-2 survive (killed before saving 3): the resumed run's log has each step once."""
    from longctx.train.trainer import Trainer

    sets = {"train.steps": 3, "checkpoint.every": 1, "checkpoint.keep_last": 3, **NO_EXPORT}
    Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **sets)).run()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000003")
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # a line torn by the kill
    Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **sets)).run()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_partial_checkpoint_directories_are_removed_on_start(tiny_llama, packs, tmp_path):
    from longctx.train.trainer import Trainer

    ckpts = tmp_path / "run" / "checkpoints"
    for name in (".step-00000005.k2j3.tmp", ".step-00000004.old-123"):
        (ckpts / name).mkdir(parents=True)
        (ckpts / name / "model.safetensors").write_bytes(b"half")
    (tmp_path / "run" / ".final.ab12.tmp").mkdir()
    Trainer(tr.base_config(tiny_llama, packs, tmp_path / "run", **NO_EXPORT)).setup()
    assert list(ckpts.iterdir()) == [] and not (tmp_path / "run" / ".final.ab12.tmp").exists()


def test_export_false_does_not_print_model_exported(tiny_llama, packs, tmp_path, capsys):
    from longctx.cli.train import main

    sets = [f"model.path={tiny_llama}", f"data.path={packs}", f"checkpoint.out={tmp_path / 'run'}", "log.progress=false",
            "log.tensorboard=false", "train.steps=1", "checkpoint.export=false"]
    assert main([a for s in sets for a in ("--set", s)]) == 0
    out = capsys.readouterr().out
    assert "model exported" not in out and "checkpoint.export is false" in out


def test_a_collective_that_fails_under_torchrun_ends_the_rank_with_one_line_naming_it(monkeypatch, capsys):
    """A lost peer (gloo's timeout here) prints `rank N: lost contact ...` once, not a traceback per rank."""
    from longctx.cli import main
    from longctx.cli import train as train_cli

    def lost_peer(cfg):
        raise RuntimeError("[/x/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
                           "30000ms for recv operation to complete\nmore detail")

    monkeypatch.setattr(train_cli, "run_training", lost_peer)
    monkeypatch.setenv("RANK", "3")
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("longctx train: error: rank 3: lost contact with another rank ([/x/third_party/gloo/")


def test_a_runtime_error_that_is_not_a_failed_collective_keeps_its_traceback(monkeypatch):
    from longctx.cli import main
    from longctx.cli import train as train_cli

    def bug(cfg):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(train_cli, "run_training", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["train"])


def test_a_negative_parallel_timeout_is_refused_naming_the_key():
    with pytest.raises(LongctxError, match="parallel.timeout_s"):
        load_config(None, ["parallel.timeout_s=-1"])
