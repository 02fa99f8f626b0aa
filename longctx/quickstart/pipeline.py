"""The quick start, step by step: evaluate -> extend -> pack -> train (ring attention) -> evaluate.

Each step calls the library function behind one ``longctx`` subcommand with the arguments that
``report/commands.sh`` prints, so every number in the report comes from a run the user can repeat
on their own checkpoint. Layout of ``out``: ``models/`` (extended checkpoints), ``data/sft.jsonl``,
``packs/``, ``configs/`` (trainer YAML), ``train/<method>/`` (trainer output; ``final/`` is the
trained model), ``eval/`` (needle and ppl results.json) and ``report/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from eval_longbench.passkey import chat_overhead
from longctx.core.errors import LongctxError
from longctx.models.organism import shipped_model_dir
from longctx.train.config import EvalConfig
from longctx.core.io import atomic_write_text, check_out_vs_inputs
from longctx.quickstart.config import QuickstartConfig
from longctx.quickstart.eta import eta_note, stage_estimates

MARKER = "quickstart.json"


def _say(msg: str) -> None:
    print(msg, flush=True)


@contextlib.contextmanager
def _timed(key: str, title: str, timings: dict, estimates: dict[str, float]) -> Iterator[None]:
    _say(f"\n== {title}; {eta_note(estimates, timings)}")
    t0 = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - t0, 1)
    _say(f"   ({timings[key]:.0f} s)")


def method_label(method: str) -> str:
    return {"linear": "pi", "yarn": "yarn", "abf": "abf"}.get(method, method)


def default_abf_theta(model_dir: str | Path, factor: float) -> float:
    """The quick start's ABF base: the NTK-aware base for ``factor`` over the model's rotated channels,
    ``theta * factor ** (d / (d - 2))`` with d the rotary dimension (bloc97; Code Llama uses a fixed 1e6)."""
    from rope_scaling.basic import ntk_base
    from rope_scaling.checkpoint_config import read_config, read_rope_config
    from rope_scaling.common import rotary_dim

    rope = read_rope_config(*read_config(model_dir))
    return ntk_base(rope.rope_theta, factor, rotary_dim(rope.head_dim, rope.partial_rotary_factor))


class Runner:
    """Holds the paths and the shell equivalents while :func:`run_quickstart` walks the steps."""

    def __init__(self, cfg: QuickstartConfig):
        cfg.validate()  # fields may have changed since the config was built
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.base = Path(cfg.model) if cfg.model else shipped_model_dir()
        if not (self.base / "config.json").is_file():
            raise LongctxError(f"{self.base}: --model: not a checkpoint directory (no config.json)")
        conf = json.loads((self.base / "config.json").read_text())
        self.context = int(conf["max_position_embeddings"])
        # Evaluated prompt lengths: the prompt plus the chat template and the reply fill exactly m x context
        # tokens, so "1x" really lies inside the window (the reply of a 512-token prompt would not).
        from packing.pipeline import load_tokenizer

        tok = load_tokenizer(str(self.base))
        if not getattr(tok, "chat_template", None):
            raise LongctxError(f"{self.base}: --model: the tokenizer has no chat template (the quick start asks its "
                               "passkey questions as chat turns)")
        self.overhead = chat_overhead(tok)
        self.windows = [self.context * m for m in cfg.multiples]
        self.lengths = [w - self.overhead for w in self.windows]
        self.target = self.context * cfg.factor
        self.commands: list[str] = []
        self.timings: dict[str, float] = {}
        self.needle_cells: dict[str, list[dict]] = {}
        self.ppl_rows: dict[str, list[dict]] = {}
        self.models: dict[str, dict] = {}  # name -> {"path", "method", "stage"}

    # ------------------------------------------------------------ helpers
    def cmd(self, comment: str, line: str) -> None:
        self.commands.append(f"# {comment}\n{line}")

    def ext_dir(self, method: str) -> Path:
        return self.out / "models" / f"{method_label(method)}-x{self.cfg.factor}"

    def evaluate(self, names: list[str]) -> None:
        """Passkey grid + sliding-window perplexity for each model in ``names`` (one load per model)."""
        from longctx.recipe.steps import evaluate_models

        c = self.cfg
        ev = EvalConfig(passkey_lengths=self.windows, samples=c.eval_samples * c.eval_depths, depths=c.eval_depths,
                        ppl_stride=c.ppl_stride, seed=c.seed)
        cells, rows, command = evaluate_models({n: self.models[n]["path"] for n in names}, ev,
                                               prompt_lengths=self.lengths, out=self.out / "eval", progress=c.progress)
        self.needle_cells.update(cells)
        self.ppl_rows.update(rows)
        self.cmd(f"evaluate {', '.join(names)}: passkey heatmap and perplexity vs length", command)

    # ------------------------------------------------------------ steps
    def step_extend(self) -> None:
        from longctx.recipe.steps import extend_step

        for m in self.cfg.methods:
            params = {}
            if m == "abf":
                theta = self.cfg.abf_theta or default_abf_theta(self.base, self.cfg.factor)
                params["rope_theta"] = float(round(theta))  # a whole number, so commands.sh repeats it exactly
            rope, command = extend_step(self.base, self.ext_dir(m), method=m, factor=self.cfg.factor, params=params)
            _say(f"   {method_label(m)}: rope_parameters {json.dumps(rope)}")
            name = f"{method_label(m)}-x{self.cfg.factor}"
            self.models[name] = {"path": str(self.ext_dir(m)), "method": method_label(m), "stage": "training-free"}
            self.cmd(f"extend with {m}", command)

    def step_pack(self) -> Path:
        from packing.pipeline import load_tokenizer
        from longctx.recipe.synthetic import sft_records, write_sft_jsonl
        from longctx.recipe.steps import pack_step

        c = self.cfg
        tok = load_tokenizer(str(self.base))
        records = sft_records(tok, c.sft_records, min_tokens=self.context // 2, max_tokens=self.target, seed=c.seed)
        jsonl = write_sft_jsonl(self.out / "data" / "sft.jsonl", records)
        packs = self.out / "packs"
        counts, command = pack_step([jsonl], self.base, packs, pack_length=self.target, train_on=c.train_on, seed=c.seed,
                                    progress=c.progress, tokenizer=tok)
        _say(f"   {counts['sequences']} conversations -> {counts['packs']} packs of {self.target} tokens")
        self.cmd("pack the synthetic passkey conversations (data/sft.jsonl, written by the quick start; use your own "
                 "chat data here)", command)
        return packs

    def train_config(self, method: str, packs: Path):
        from longctx.recipe.steps import train_config

        c = self.cfg
        return train_config(self.ext_dir(method), packs, self.out / "train" / method_label(method), {
            "model.attn_implementation": "auto",  # longctx_ring with sp_degree > 1
            "parallel.sp_degree": c.sp_degree,
            "parallel.layout": "varlen",  # packs hold several conversations
            "optim.lr": c.lr, "optim.warmup_steps": c.warmup_steps,
            "train.steps": c.steps, "train.micro_batch": 1, "train.loss": "weighted", "train.seed": c.seed,
            "checkpoint.every": 0, "checkpoint.keep_last": 1,
            "log.progress": c.progress, "log.tensorboard": False,
        })

    def step_train(self, packs: Path) -> None:
        from longctx.recipe.steps import train_step

        for m in self.cfg.methods:
            cfg = self.train_config(m, packs)
            yaml_path = self.out / "configs" / f"train-{method_label(m)}.yaml"
            _say(f"   {method_label(m)}: {self.cfg.steps} steps, {self.cfg.sp_degree} ranks (ring attention, gloo)")
            _, command = train_step(cfg, self.cfg.sp_degree, yaml_path)
            name = f"{method_label(m)}-x{self.cfg.factor}+ft"
            self.models[name] = {"path": str(Path(cfg.checkpoint.out) / "final"), "method": method_label(m),
                                 "stage": "fine-tuned"}
            self.cmd(f"continue training the {m} checkpoint on 2 sequence-parallel ranks (ring attention)", command)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse to mix runs: an existing folder is replaced only with ``overwrite`` and only if it is ours."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise LongctxError(f"{out}: already exists (choose another --out or pass --overwrite)")
        if not (out / MARKER).exists():
            raise LongctxError(f"{out}: --overwrite: not a quick start folder (no {MARKER}); refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_quickstart(cfg: QuickstartConfig, overwrite: bool = False) -> dict:
    """Run every step and write ``out/report``; returns the summary dict (also report/summary.json)."""
    from longctx.quickstart.report import write_report

    t0 = time.perf_counter()
    out = Path(cfg.out)
    r = Runner(cfg)  # validates the model before anything is written
    check_out_vs_inputs(out, [r.base])
    prepare_out(out, overwrite)
    atomic_write_text(out / MARKER, json.dumps(cfg.to_dict(), indent=2) + "\n")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    n = cfg.eval_depths * cfg.eval_samples
    eta = stage_estimates(cfg)
    base_name = "base"
    r.models[base_name] = {"path": str(r.base), "method": "none", "stage": "shipped"}
    with _timed("evaluate", f"[1/5] evaluate the shipped model at {r.windows} tokens (n={n} per length)", r.timings, eta):
        r.evaluate([base_name])
    with _timed("extend", f"[2/5] extend RoPE x{cfg.factor} ({', '.join(cfg.methods)}) and evaluate training-free", r.timings, eta):
        r.step_extend()
        r.evaluate([k for k, v in r.models.items() if v["stage"] == "training-free"])
    with _timed("pack", f"[3/5] pack {cfg.sft_records} synthetic passkey conversations into {r.target}-token packs", r.timings, eta):
        packs = r.step_pack()
    with _timed("train", f"[4/5] continue training ({cfg.steps} steps per method, ring attention on {cfg.sp_degree} ranks)", r.timings, eta):
        r.step_train(packs)
    with _timed("re-evaluate", "[5/5] evaluate the trained models", r.timings, eta):
        r.evaluate([k for k, v in r.models.items() if v["stage"] == "fine-tuned"])
    total = time.perf_counter() - t0
    summary = write_report(r, total)
    _say(f"\nquick start done in {total / 60:.1f} min; report in {out / 'report'}")
    return summary
