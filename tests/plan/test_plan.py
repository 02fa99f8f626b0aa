"""The memory/throughput planner: shapes, terms, search, CLI. Fast, pure arithmetic."""

import json

import pytest

from longctx.core.errors import LongctxError
from longctx.plan import PRESETS, GiB, RunShape, load_model_shape, max_seq_len, plan_run, recommend_sp, shape_from_config
from longctx.plan import step_time
from longctx.cli.plan import main as plan_main
from longctx.plan.memory import saved_activation_bytes
from longctx.models.tiny import tiny_config

L3 = PRESETS["llama-3-8b"]


@pytest.mark.parametrize("name, published", [
    ("llama-3-8b", 8_030_261_248),   # Meta-Llama-3-8B model card / safetensors index
    ("llama-2-7b", 6_738_415_616),   # Llama-2-7b-hf
    ("qwen2-7b", 7_615_616_512),     # Qwen2-7B (q/k/v biases)
    ("mistral-7b", 7_241_732_096),   # Mistral-7B-v0.1
    ("smollm2-135m", 134_515_008),   # SmolLM2-135M(-Instruct): the model `longctx models smollm2` writes
])
def test_preset_parameter_counts_match_published_totals(name, published):
    """Each preset's parameter count equals the total its checkpoint publishes, to the parameter."""
    assert PRESETS[name].num_params == published


@pytest.mark.parametrize("family, tied", [("llama", True), ("llama", False), ("qwen2", False), ("mistral", True)])
def test_shape_from_config_counts_the_parameters_of_the_instantiated_model(family, tied):
    """shape_from_config(config).num_params == sum of numel over the real transformers model's parameters."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(family, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48,
                      tie_word_embeddings=tied)
    model = AutoModelForCausalLM.from_config(cfg)
    assert shape_from_config(cfg).num_params == sum(p.numel() for p in model.parameters())


def test_load_model_shape_reads_a_checkpoint_directory(tiny_llama):
    """A checkpoint directory resolves through its config.json to the model's dimensions."""
    shape = load_model_shape(str(tiny_llama))
    cfg = json.loads((tiny_llama / "config.json").read_text())
    assert (shape.hidden_size, shape.num_layers, shape.vocab_size) == (
        cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"])


def test_load_model_shape_rejects_unknown_names_and_bad_json(tmp_path):
    """An unknown preset and a malformed config.json raise LongctxError naming the flag or file:line."""
    with pytest.raises(LongctxError, match="--model"):
        load_model_shape("no-such-model")
    bad = tmp_path / "config.json"
    bad.write_text('{"hidden_size": 8,\n oops}')
    with pytest.raises(LongctxError, match=r"config.json:2"):
        load_model_shape(str(bad))


@pytest.mark.parametrize("changes, flag", [
    (dict(gpus=8, sp=3), "--sp"),
    (dict(gpus=8, sp=8, seq_len=8 * 1001), "--seq-len"),
    (dict(sharding="zero9"), "--sharding"),
    (dict(offload="params", sharding="zero2"), "--offload"),
])
def test_impossible_runs_raise_naming_the_flag(changes, flag):
    """RunShape validation fails early with the flag to fix in the message."""
    with pytest.raises(LongctxError, match=flag):
        RunShape(**{"seq_len": 8192, **changes})


def test_sharding_divides_model_states_by_the_gpu_count():
    """ZeRO-3 over 8 GPUs keeps 1/8 of the params, grads and optimizer states of an unsharded replica."""
    none = {t.name: t.bytes for t in plan_run(L3, RunShape(seq_len=8192, gpus=8)).breakdown}
    z3 = {t.name: t.bytes for t in plan_run(L3, RunShape(seq_len=8192, gpus=8, sharding="zero3")).breakdown}
    for name in ("params", "grads", "optimizer states"):
        assert z3[name] == pytest.approx(none[name] / 8)
    # bf16 params + bf16 grads + fp32 (master, m, v) = 16 bytes per parameter in all.
    assert none["params"] + none["grads"] + none["optimizer states"] == 16 * L3.num_params


def test_offloading_the_optimizer_removes_its_states_from_the_gpu():
    """offload=optimizer leaves no optimizer state and only one layer's gradient bucket on the GPU."""
    terms = {t.name: t.bytes for t in plan_run(L3, RunShape(seq_len=8192, sharding="zero3", offload="optimizer")).breakdown}
    assert terms["optimizer states"] == 0
    assert terms["grads"] == L3.layer_params * 2


def test_full_checkpointing_keeps_one_hidden_state_per_layer():
    """With full checkpointing the kept activations are exactly L · T · 2 bytes · H in bf16."""
    run = RunShape(seq_len=32768, checkpointing="full")
    assert saved_activation_bytes(32768, L3, run) == 32 * 32768 * 2 * 4096
    assert saved_activation_bytes(32768, L3, run.replace(checkpointing="none")) > 20 * saved_activation_bytes(32768, L3, run)


def test_sequence_parallelism_divides_activation_memory():
    """Doubling the SP degree halves every activation term (the tokens each GPU holds halve)."""
    a = {t.name: t.bytes for t in plan_run(L3, RunShape(seq_len=65536, gpus=4, sp=2, sharding="zero3")).breakdown}
    b = {t.name: t.bytes for t in plan_run(L3, RunShape(seq_len=65536, gpus=4, sp=4, sharding="zero3")).breakdown}
    for name in ("activations (kept)", "layer activations", "backward transient", "attention workspace", "ring buffers"):
        assert b[name] == pytest.approx(a[name] / 2)


def test_chunked_loss_is_much_smaller_than_full_logits_at_long_context():
    """At 64K tokens and a 128K vocabulary, a 4K-token loss chunk needs under a quarter of full logits."""
    full = {t.name: t.bytes for t in plan_run(L3, RunShape(seq_len=65536)).breakdown}["logits / loss"]
    chunked = {t.name: t.bytes for t in plan_run(L3, RunShape(seq_len=65536, loss_chunk=4096)).breakdown}["logits / loss"]
    assert full > 65536 * 128256 * 12 - 1  # at least the fp32 log-softmax and its two grads
    assert chunked < full / 4


def test_peak_is_the_largest_phase_plus_margin_and_overhead():
    """total = max over phases of the live terms, times (1 + margin), plus the fixed overhead."""
    r = plan_run(L3, RunShape(seq_len=16384, gpus=8, sharding="fsdp", frag_margin=0.1, overhead_gib=2.0))
    live = sum(t.bytes for t in r.breakdown if r.peak_phase in t.phases)
    assert live == max(r.phase_bytes.values())
    assert r.total_bytes == pytest.approx(live * 1.1 + 2 * GiB)


def test_max_seq_len_is_the_boundary_between_fit_and_no_fit():
    """The returned length fits and the next multiple of the zigzag granularity (2·sp) does not."""
    run = RunShape(seq_len=16, gpus=8, sp=8, sharding="zero3", loss_chunk=4096)
    n = max_seq_len(L3, run)
    assert n % 16 == 0
    assert plan_run(L3, run.replace(seq_len=n)).fits
    assert not plan_run(L3, run.replace(seq_len=n + 16)).fits


def test_recommend_sp_returns_the_smallest_degree_that_fits():
    """Every smaller divisor of the GPU count fails to fit; the recommended one fits."""
    run = RunShape(seq_len=262144, gpus=8, sharding="zero3", loss_chunk=4096)
    sp = recommend_sp(L3, run)
    assert sp is not None and sp > 1
    assert plan_run(L3, run.replace(sp=sp)).fits
    assert all(not plan_run(L3, run.replace(sp=d)).fits for d in (1, 2, 4) if d < sp)


def test_step_time_is_dense_at_short_context_and_quadratic_at_long_context():
    """Attention is a small share of FLOPs at 4K tokens and dominates at 1M; time scales with 1/MFU."""
    short = step_time(L3, RunShape(seq_len=4096), mfu=0.5)
    long = step_time(L3, RunShape(seq_len=1 << 20, gpus=8, sp=8, sharding="zero3"), mfu=0.5)
    assert short.attention_fraction < 0.15 < 0.8 < long.attention_fraction
    assert step_time(L3, RunShape(seq_len=4096), mfu=0.25).seconds == pytest.approx(2 * short.seconds)
    # 6·N·T at 4K tokens on one H100 at 50% MFU: about 8e9 · 6 · 4096 / 4.9e14 s ≈ 0.4 s, plus attention.
    assert 0.35 < short.seconds < 0.6


def test_cli_json_reports_the_verdict_and_exits_nonzero_when_it_does_not_fit(capsys):
    """--json prints parseable output with the verdict; a run that cannot fit exits 1."""
    assert plan_main(["--model", "llama-3-8b", "--seq-len", "8192", "--gpus", "8", "--sharding", "fsdp", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fits"] is True and out["max_seq_len"] >= 8192 and out["recommended_sp"] == 1
    assert sum(t["bytes"] for t in out["terms"] if t["live_at_peak"]) + out["margin_bytes"] + out["overhead_bytes"] == \
        pytest.approx(out["total_bytes"])
    assert plan_main(["--model", "llama-3-8b", "--seq-len", "1048576", "--checkpointing", "none"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_plan_message_carries_the_numbers():
    """PlanResult.message() names the verdict, the predicted GiB and the capacity, for the trainer to print."""
    r = plan_run(L3, RunShape(seq_len=1048576, checkpointing="none"))
    msg = r.message()
    assert not r.fits and "does NOT fit" in msg
    assert f"{r.total_bytes / GiB:.1f} GiB" in msg and "80.0 GiB" in msg


def test_run_for_device_cpu_uses_the_cpu_mode_and_explicit_fields_win():
    """On CPU the run is fp32 / SDPA / per-tensor AdamW with no CUDA overhead and RAM as capacity."""
    from longctx.plan import run_for_device

    run = run_for_device("cpu", 4096, sp=2, gpus=2, layout="varlen")
    assert (run.dtype, run.attn_kernel, run.foreach_optimizer, run.overhead_gib) == ("fp32", "sdpa", False, 0.0)
    assert run.gpu_mem_gib > 0.1
    assert run_for_device("cpu", 4096, gpu_mem_gib=3.0).gpu_mem_gib == 3.0


@pytest.mark.parametrize("flags, flag", [
    (["--gpu-mem", "nan"], "--gpu-mem"),
    (["--gpu-mem", "inf"], "--gpu-mem"),
    (["--gpu-mem", "0"], "--gpu-mem"),
    (["--peak-tflops", "0"], "--peak-tflops"),
    (["--peak-tflops", "-5"], "--peak-tflops"),
    (["--peak-tflops", "nan"], "--peak-tflops"),
    (["--overhead", "-100"], "--overhead"),
    (["--overhead", "nan"], "--overhead"),
    (["--frag-margin", "nan"], "--frag-margin"),
    (["--frag-margin", "1"], "--frag-margin"),
    (["--mfu", "nan"], "--mfu"),
    (["--mfu", "0"], "--mfu"),
    (["--loss-chunk", "-1"], "--loss-chunk"),
    (["--micro-batch", "0"], "--micro-batch"),
    (["--tiled-mlp", "--mlp-tiles", "-1"], "--mlp-tiles"),
])
def test_plan_refuses_non_finite_and_out_of_range_numbers_naming_the_flag(flags, flag):
    """`plan --gpu-mem nan` used to plan, `--peak-tflops 0` fell back to the GPU's peak and `--overhead -100`
    said FITS: every numeric flag is checked (finite, in range) before any planning, one line naming it."""
    with pytest.raises(LongctxError, match=f"^{flag}: ") as err:
        plan_main(["--model", "llama-3-8b", "--seq-len", "8192", *flags])
    assert "\n" not in str(err.value)


def test_run_shape_refuses_nan_gpu_memory_from_library_callers():
    """NaN compares false with everything, so `gpu_mem_gib <= 0` let it through; RunShape itself refuses it."""
    with pytest.raises(LongctxError, match="--gpu-mem: must be a finite number"):
        RunShape(seq_len=8192, gpu_mem_gib=float("nan"))


def test_plan_uses_the_given_peak_tflops(capsys):
    """An explicit --peak-tflops is the peak in the report (not the GPU table's)."""
    assert plan_main(["--model", "llama-3-8b", "--seq-len", "8192", "--gpus", "8", "--sharding", "fsdp",
                      "--peak-tflops", "123", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step_time"]["peak_flops"] == 123e12
