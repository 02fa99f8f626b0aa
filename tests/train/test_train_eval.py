"""Evaluation during training (the ``eval:`` section): when it runs, what it records, that it leaves
the training trajectory alone, ``stop_at``, and batched greedy decoding against one prompt at a time.

Runs on the shipped organism (a 512-token passkey model) with the trainer tests' small packs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from longctx.core.errors import LongctxError
from longctx.train.config import load_config
from longctx.train.trainer import Trainer

from support import ORGANISM, train_ranks as tr

# small and cheap: 2 prompts at 256 tokens, ppl at 256, the guard at 256 too (one length in all)
EVAL = {"eval.passkey_lengths": "[256]", "eval.samples": 2, "eval.depths": 2, "eval.ppl_lengths": "[256]",
        "eval.guard_length": 256}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tiny matmuls only lose to thread hand-offs on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(packs: Path, out: Path, **sets):
    return tr.base_config(ORGANISM, packs, out, **{"optim.lr": 1e-4, **sets})


def _eval_lines(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x.get("event") == "eval"]


def test_eval_records_appear_at_step_zero_every_n_steps_and_at_the_end(packs, tmp_path):
    """every=2 over 3 steps with at_end: records at steps 0 (the base), 2 and 3, each with accuracy and
    perplexity per asked length, the guard beside its base values, and the seconds it took."""
    out = Trainer(_cfg(packs, tmp_path / "run", **{"train.steps": 3, "eval.every": 2, "eval.at_end": "true"}, **EVAL)).run()
    recs = _eval_lines(tmp_path / "run")
    assert [r["step"] for r in recs] == [0, 2, 3] == [r["step"] for r in out["eval"]]
    for r in recs:
        assert set(r["passkey"]) == {"256"} and 0 <= r["passkey"]["256"] <= 1
        assert set(r["ppl"]) == {"256"} and r["ppl"]["256"] > 1
        assert r["guard"]["length"] == 256 and r["seconds"] > 0 and r["samples"] == 2
        assert r["guard"]["passkey_base"] == recs[0]["guard"]["passkey"]
        assert r["guard"]["ppl_base"] == recs[0]["guard"]["ppl"]
        assert r["guard"]["ppl_ratio"] == pytest.approx(r["guard"]["ppl"] / r["guard"]["ppl_base"])
    assert recs[0]["passkey"]["256"] == 1.0  # the organism retrieves inside its window
    png = tmp_path / "run" / "eval_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_leaves_weights_and_rng_bitwise_unchanged(packs, tmp_path):
    """A run evaluating after every step ends with bitwise the same weights as one without evaluation,
    and every step starts from the same RNG state in train mode (no dropout or sampling state leaks)."""
    def run(out: Path, **sets) -> tuple[dict, list]:
        seen: list = []
        t = Trainer(_cfg(packs, out, **{"train.steps": 3, "checkpoint.export": "false"}, **sets),
                    callbacks=[lambda tr_, s, line: seen.append((torch.get_rng_state(), tr_.model.training,
                                                                  tr_.model.config._attn_implementation))])
        t.run()
        return tr.params_of(t.model), seen

    plain, seen_plain = run(tmp_path / "plain")
    evald, seen_eval = run(tmp_path / "eval", **{"eval.every": 1}, **EVAL)
    assert len(_eval_lines(tmp_path / "eval")) == 4 and not (tmp_path / "plain" / "eval_curves.png").exists()
    assert plain.keys() == evald.keys()
    for k in plain:
        assert (plain[k] == evald[k]).all(), k
    for (rng_a, train_a, attn_a), (rng_b, train_b, attn_b) in zip(seen_plain, seen_eval, strict=True):
        assert torch.equal(rng_a, rng_b) and train_a and train_b and attn_a == attn_b


def test_stop_at_stops_early_then_saves_and_exports_and_a_rerun_stays_stopped(packs, tmp_path):
    """The organism is exact at 256 tokens, so stop_at 1.0 is met at the first evaluation after step 0
    (step 2 of 10): the run stops there, checkpoints and exports; rerunning does not train further."""
    sets = {"train.steps": 10, "eval.every": 2, "eval.stop_at": 1.0, "optim.lr": 1e-6, **EVAL}
    out = Trainer(_cfg(packs, tmp_path / "run", **sets)).run()
    assert out["status"] == "done" and out["step"] == 2 and out["stopped_early"] == "eval.stop_at"
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file() and out["exported"]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000002" / "trainer.json").read_text())
    assert state["stopped_early"] == "eval.stop_at"
    again = Trainer(_cfg(packs, tmp_path / "run", **sets)).run()
    assert again["step"] == 2 and again["stopped_early"] == "eval.stop_at" and not again["history"]


def test_resumed_run_compares_the_guard_with_the_step_zero_base(packs, tmp_path):
    """A resume keeps the base values from step 0 (eval_base.json); without that file they are measured on
    the base checkpoint itself, which gives the same numbers as the step-0 evaluation."""
    sets = {"train.steps": 2, "eval.every": 1, "checkpoint.export": "false", **EVAL}
    Trainer(_cfg(packs, tmp_path / "run", **sets)).run()
    base = _eval_lines(tmp_path / "run")[0]["guard"]
    (tmp_path / "run" / "eval_base.json").unlink()
    more = {**sets, "train.steps": 3, "checkpoint.allow_config_change": "true"}
    Trainer(_cfg(packs, tmp_path / "run", **more)).run()
    recs = _eval_lines(tmp_path / "run")
    assert [r["step"] for r in recs] == [0, 1, 2, 3]
    assert recs[-1]["guard"]["passkey_base"] == base["passkey"]
    assert recs[-1]["guard"]["ppl_base"] == pytest.approx(base["ppl"], rel=1e-6)


def test_batched_greedy_decoding_equals_one_prompt_at_a_time():
    """Prompts of two lengths, 3 rows per generate call: every reply equals plain transformers greedy
    generation of that prompt alone (the oracle), the passkey answers included."""
    from eval_longbench.models import chat_prompt, hf_generate_batch_fn, load_model
    from longctx.train.evaluate import passkey_prompts

    model, tok = load_model(ORGANISM)
    samples = [s for group in passkey_prompts(tok, [200, 256], 4, 4, seed=7).values() for s in group]
    prompts = [s["prompt"] for s in samples]
    batched = hf_generate_batch_fn(model, tok, chat=True, batch_size=3)(prompts, 24)
    single = []
    for p in prompts:
        ids = tok(chat_prompt(tok, p), add_special_tokens=False, return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
        single.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    assert batched == single
    assert sum(s["answer"] in reply for s, reply in zip(samples, batched)) >= 6  # real answers, not empty strings


@pytest.mark.parametrize("override, key", [
    ("eval.every=-1", "eval.every"),
    ("eval.samples=0", "eval.samples"),
    ("eval.passkey_lengths=[512,0]", "eval.passkey_lengths"),
    ("eval.passkey_lengths=five", r"eval.passkey_lengths\[0\]"),
    ("eval.ppl_lengths=[1]", "eval.ppl_lengths"),
    ("eval.prompt=json", "eval.prompt"),
    ("eval.stop_at=1.5", "eval.stop_at"),
    ("eval.stop_at=.nan", "eval.stop_at"),
])
def test_bad_eval_values_are_refused_naming_the_key(override, key):
    """Each bad eval value fails when the config is read, with the dotted key in the message."""
    sets = [override] + (["eval.every=1", "eval.passkey_lengths=[512]"] if "stop_at" in override else [])
    with pytest.raises(LongctxError, match=key):
        load_config(None, sets)


def test_stop_at_without_lengths_or_steps_is_refused():
    """stop_at watches the longest passkey length at each evaluation: it needs both."""
    with pytest.raises(LongctxError, match="eval.stop_at.*passkey_lengths"):
        load_config(None, ["eval.stop_at=0.9", "eval.every=5"])
    with pytest.raises(LongctxError, match="eval.stop_at.*eval.every"):
        load_config(None, ["eval.stop_at=0.9", "eval.passkey_lengths=[512]"])


def test_eval_lists_and_null_read_from_yaml(tmp_path):
    """YAML lists and null reach the dataclass as lists and None; --set accepts "512,2048" too."""
    (tmp_path / "run.yaml").write_text("eval:\n  every: 10\n  passkey_lengths: [512, 2048]\n  stop_at: null\n")
    cfg = load_config(tmp_path / "run.yaml", ["eval.ppl_lengths=512,8192"])
    assert cfg.eval.passkey_lengths == [512, 2048] and cfg.eval.ppl_lengths == [512, 8192] and cfg.eval.stop_at is None


def test_missing_ppl_text_is_refused_naming_the_key(packs, tmp_path):
    """A perplexity text path that does not exist fails at setup, before any training step."""
    cfg = _cfg(packs, tmp_path / "run", **{"eval.every": 1, "eval.ppl_text": str(tmp_path / "nope.txt"), **EVAL})
    with pytest.raises(LongctxError, match=r"eval.ppl_text: .*nope.txt"):
        Trainer(cfg).run()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_training_curves_plot_one_line_per_length(tmp_path):
    """plot_training_curves draws accuracy and perplexity per length plus the guard and writes a PNG."""
    from eval_longbench.plots import plot_training_curves

    recs = [{"step": s, "passkey": {"512": 1.0, "2048": s / 10}, "ppl": {"512": 2.0, "2048": 3.0 - s / 10},
             "guard": {"length": 512, "passkey": 1.0, "passkey_base": 1.0, "ppl": 2.0, "ppl_base": 2.0}}
            for s in (0, 5, 10)]
    path = plot_training_curves(recs, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_at_end_alone_evaluates_the_base_and_the_final_model(packs, tmp_path):
    """every: 0 with at_end: true evaluates twice, at step 0 and after the last step, and never between."""
    Trainer(_cfg(packs, tmp_path / "run", **{"train.steps": 2, "eval.at_end": "true", "checkpoint.export": "false"},
                 **EVAL)).run()
    assert [r["step"] for r in _eval_lines(tmp_path / "run")] == [0, 2]


def test_eval_records_reach_tensorboard_as_scalars(tmp_path):
    """Metrics.record writes the line and one eval/ scalar per length, guard value and the cost."""
    from longctx.train.metrics import Metrics

    class Writer:
        def __init__(self):
            self.scalars = {}

        def add_scalar(self, tag, value, step):
            self.scalars[(tag, step)] = value

        def close(self):
            pass

    m = Metrics(tmp_path, 10, progress=False, tensorboard=False)
    m.tb = Writer()
    rec = {"step": 5, "event": "eval", "passkey": {"512": 1.0, "2048": 0.5}, "ppl": {"512": 2.0}, "seconds": 3.0,
           "guard": {"length": 512, "passkey": 1.0, "passkey_base": 1.0, "ppl": 2.0, "ppl_base": 1.9}}
    m.record(rec)
    scalars = m.tb.scalars
    m.close()
    assert scalars[("eval/passkey_2048", 5)] == 0.5 and scalars[("eval/ppl_512", 5)] == 2.0
    assert scalars[("eval/guard_ppl_base", 5)] == 1.9 and scalars[("eval/seconds", 5)] == 3.0
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == rec
