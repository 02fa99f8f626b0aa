"""Run a recipe: the one pipeline of longctx (the quick start and the shipped model's pretraining are recipes).

Per stage: extend -> (evaluate the extended model) -> data -> pack -> train -> evaluate. A stage starts
from the previous stage's trained model, or from the base or any earlier stage (``from:``). Stages that
start from the same model form a *wave* and run side by side, step by step (every extension, every
training-free evaluation, the packs, every training, every evaluation), so a comparison of methods
reads as one experiment, and stages with identical data (same stream, lengths and pack length) pack it
once.

The resume rule (the runner's, so everything built on it has it). A finished stage (``stage.json``)
is skipped when its hash still matches: the hash covers the stage's resolved config (extension, data,
the trainer keys that change the weights, evaluation) and its inputs (the content fingerprint of the
model it starts from, :func:`eval_longbench.fingerprint.model_fingerprint`, and of every user JSONL
file). A finished stage whose hash changed is refused unless ``--from-stage`` names it or an earlier
stage (then it and every later stage run again). An unfinished stage continues where it stopped: its
finished steps (extension, packs) are kept, and the trainer resumes from its newest checkpoint; one
whose config or input changed since it started is started again. Every evaluation is bound to the
fingerprint of the model it measured, so a results file never mixes two checkpoints under one name.

Where the files go: :class:`longctx.recipe.layout.Layout` (``recipe.json`` marks the folder as a
recipe run; ``base/eval``, ``stages/NN-name/{model,data,packs,train.yaml,train,eval,progress.json,
stage.json}`` and ``report/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from eval_longbench.fingerprint import model_fingerprint
from eval_longbench.haystack import read_text_sources, split_sentences
from eval_longbench.passkey import MAX_NEW_TOKENS, chat_overhead, per_length
from eval_longbench.public_text import world_english_bible
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json, check_out_vs_inputs, is_our_output, read_json
from longctx.models.tiny import FLAGS, make_tiny_checkpoint
from longctx.recipe.layout import EXTENDED, TRAINED, Layout
from longctx.recipe.pretrain_data import write_mixed_packs, write_pretrain_packs
from longctx.recipe.report import write_report
from longctx.recipe.spec import (
    BASE,
    HAYSTACKS,
    NO_EXTENSION,
    OWNED_TRAIN_KEYS,
    Recipe,
    StageSpec,
    plan_rows,
    trainer_settings,
)
from longctx.recipe.steps import evaluate_models, extend_step, pack_step, q, train_config, train_step
from longctx.recipe.synthetic import sft_records, write_sft_jsonl
from longctx.train.config import RESUME_NEUTRAL_KEYS, flat_keys, from_dict
from packing.pipeline import load_tokenizer

MARKER = "recipe.json"
HASH_VERSION = 1


def _say(msg: str) -> None:
    print(msg, flush=True)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (the spawned training ranks):
    the honest cost on a shared machine, where wall time depends on the neighbours."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def file_sha(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def resolved_stage(stage: StageSpec, input_fingerprint: str, seed: int) -> dict:
    """Everything that decides a stage's result, as plain JSON: what :func:`stage_hash` hashes.

    Trainer keys that never change the weights (logging, checkpoint cadence:
    ``RESUME_NEUTRAL_KEYS``) and the paths the recipe sets are left out, so turning on a progress bar
    or saving more often does not invalidate a finished stage.
    """
    extend = {"method": stage.method, "factor": stage.factor, "target_length": stage.target_length,
              "params": stage.params}
    if stage.train is None:  # a training-free stage: the extension (and its evaluation) is all there is
        return {"version": HASH_VERSION, "input": input_fingerprint, "seed": seed, "extend": extend, "data": None,
                "train": None, "eval": _eval_hashed(stage.eval, seed),
                **({"eval_extended": True} if stage.eval_extended else {})}
    train = flat_keys(from_dict(trainer_settings(stage.train)).to_dict())
    train = {k: v for k, v in train.items() if k not in RESUME_NEUTRAL_KEYS and k not in OWNED_TRAIN_KEYS}
    if train.get("peft.method") == "none":  # keys added later (LoRA): absent when unused, so older stages keep their hash
        train = {k: v for k, v in train.items() if not k.startswith("peft.")}
    data = asdict(stage.data)
    data["jsonl"] = [{"path": p, "sha256": file_sha(p)} for p in stage.data.jsonl]
    for k, unused in (("passkey_edge_share", 0.0), ("passkey_qa_share", 0.0), ("passkey_haystack", "noise")):
        if data[k] == unused:  # keys added later: absent when unused, so older stages keep their hash
            del data[k]
    for k in ("passkey_stream", "pretrain"):
        if not data[k]:  # keys added later: absent when unused, so older stages keep their hash
            del data[k]
    if stage.data.passkey_haystack not in HAYSTACKS:  # a text file: its content decides the records
        data["passkey_haystack_sha256"] = file_sha(stage.data.passkey_haystack)
    return {"version": HASH_VERSION, "input": input_fingerprint, "seed": seed, "extend": extend, "data": data,
            "train": train, "eval": _eval_hashed(stage.eval, seed), **({"eval_extended": True} if stage.eval_extended else {})}


def _eval_hashed(ev, seed: int) -> dict | None:
    """The stage's evaluation as hashed: the after-stage keys, ``samples`` per (length, depth) cell as the
    recipe's eval section counted them before it became the trainer's eval spec (prompts per length), and
    ``seed``/``max_new_tokens`` only when they are not the recipe seed and 24, so stages finished before
    keep their hash."""
    if ev is None:
        return None
    out = {"passkey_lengths": ev.passkey_lengths, "samples": ev.samples // ev.depths, "depths": ev.depths,
           "ppl_lengths": ev.ppl_lengths, "ppl_stride": ev.ppl_stride}
    if ev.seed != seed:
        out["seed"] = ev.seed
    if ev.max_new_tokens != MAX_NEW_TOKENS:
        out["max_new_tokens"] = ev.max_new_tokens
    return out


def haystack_sentences(haystack: str) -> list[str] | None:
    """Sentences of a recipe's named haystack or text file; ``None`` for the noise haystack."""
    if haystack == "noise":
        return None
    if haystack == "bible":
        return split_sentences(world_english_bible())
    return split_sentences(read_text_sources([haystack]))


def stage_hash(resolved: dict) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved stages (for the refusal message)."""
    a, b = flat_keys(old), flat_keys(new)
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _read(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def decide(recipe: Recipe, layout: Layout, s: StageSpec, input_fp: str, redo: bool) -> tuple[str, dict, str]:
    """(action, resolved, hash) for stage ``s`` starting from a model with fingerprint ``input_fp``: action is
    "skip" (finished, same hash), "run" or "redo" (``redo``: --from-stage reached); a changed finished stage
    without ``--from-stage`` is refused naming the keys that changed."""
    resolved = resolved_stage(s, input_fp, recipe.seed)
    h = stage_hash(resolved)
    done = _read(layout.state(s) / "stage.json")
    if done is None:
        return "run", resolved, h
    if redo:
        return "redo", resolved, h
    if done.get("hash") == h:
        return "skip", resolved, h
    keys = changed_keys(done.get("resolved", {}), resolved)
    shown = ", ".join(keys[:6]) + (" ..." if len(keys) > 6 else "")
    raise LongctxError(f"{recipe.path}: stage {s.name!r}: finished with a different config or input "
                       f"(changed: {shown or 'hash'}); {layout.redo_hint(s)}")


PHASES = ("base-eval", "extend", "extended-eval", "pack", "train", "eval")
"""The steps of a run, in order: the base's evaluation, then per wave of stages each step over its stages."""


@dataclass
class _Work:
    """An unfinished stage of the wave being run: what it starts from and its progress record."""

    s: StageSpec
    src: Path
    resolved: dict
    hash: str
    prog: dict


class RecipeRun:
    """One run of ``recipe`` into ``out``; :meth:`run` walks the stages (see the module doc).

    ``layout``: where the files go (default: the recipe's own, :class:`~longctx.recipe.layout.Layout`);
    ``announce(phase, stages)``: called before each step that has work (:data:`PHASES`), e.g. to print a
    header with a time estimate; ``marker_data``: what the layout's marker file holds when it is not
    ``recipe.json`` (an application's own settings).
    """

    def __init__(self, recipe: Recipe, out: str | Path, *, from_stage: str | None = None, progress: bool = True,
                 callbacks: list[Callable] | None = None, layout: Layout | None = None,
                 announce: Callable[[str, list[StageSpec]], None] | None = None, marker_data: dict | None = None):
        self.recipe = recipe
        self.out = Path(out)
        self.layout = layout or Layout(self.out)
        self.from_stage = from_stage
        if from_stage is not None:
            recipe.stage(from_stage)  # names the stages when it is not one of them
        self.progress = progress
        self.callbacks = callbacks
        self.announce = announce
        self.marker_data = marker_data
        self.base = self.layout.init() if recipe.base_tiny else Path(recipe.base)
        if not recipe.base_tiny and not (self.base / "config.json").is_file():
            raise LongctxError(f"{recipe.path}: base: {recipe.base} is not a checkpoint directory (download it first; "
                               "--dry-run works without it)")
        self.commands: list[str] = []
        self.stages: list[dict] = []
        """The finished stage records, in recipe order (filled by :meth:`run`)."""
        self.base_eval: dict = {}
        self.timings: dict[str, float] = {}
        """Seconds spent in each of :data:`PHASES` over the whole run."""
        self.packs: dict[str, Path] = {}
        """Packs made (or found) in this run, by the hash of the data they hold: stages with the same data share them."""
        self._tok = None

    # ------------------------------------------------------------ helpers
    @property
    def tokenizer(self):
        if self._tok is None:
            self._tok = load_tokenizer(str(self.base))
            if not getattr(self._tok, "chat_template", None):
                raise LongctxError(f"{self.recipe.path}: base: the tokenizer of {self.base} has no chat template "
                                   "(passkey data and evaluation are chat turns)")
        return self._tok

    @property
    def overhead(self) -> int:
        return chat_overhead(self.tokenizer)

    def prompt_lengths(self, ev, where: str = "eval") -> list[int]:
        """The passkey prompt of each window of ``ev`` (the window less the chat template), or one error."""
        prompts = [w - self.overhead for w in ev.passkey_lengths]
        if min(prompts) < 16:
            raise LongctxError(f"{self.recipe.path}: {where}.passkey_lengths: {min(ev.passkey_lengths)} leaves no room for "
                               f"a prompt after the {self.overhead}-token chat template")
        return prompts

    def check_evals(self) -> None:
        """Every evaluation's windows hold a prompt: checked before ``--out`` is written, so that an error leaves
        nothing behind."""
        if self.recipe.eval is not None:
            self.prompt_lengths(self.recipe.eval)
        for s in self.recipe.stages:
            if s.eval is not None:
                self.prompt_lengths(s.eval, f"stage {s.name!r}: eval")

    def evaluate(self, name: str, model: Path, ev, out: Path, fingerprint: str | None = None) -> dict:
        """Passkey + perplexity of one model; returns the per-window summary and the commands."""
        prompts = self.prompt_lengths(ev)
        fingerprint = fingerprint or model_fingerprint(model)
        cells, rows, command = evaluate_models({name: model}, ev, prompt_lengths=prompts, out=out,
                                               progress=self.progress, fingerprints={name: fingerprint})
        acc = per_length(cells[name])
        return {"model": name, "path": str(model), "cells": cells[name], "command": command,
                "passkey": {str(w): {"prompt_tokens": p, **acc[p]} for w, p in zip(ev.passkey_lengths, prompts)},
                "ppl": {str(int(r["length"])): r["ppl"] for r in rows[name]}}

    @contextlib.contextmanager
    def phase(self, key: str, stages: list[StageSpec]) -> Iterator[None]:
        """Time one step of the run (:data:`PHASES`) into :attr:`timings`, announced first."""
        if self.announce is not None:
            self.announce(key, stages)
        t0 = time.perf_counter()
        yield
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    # ------------------------------------------------------------ decisions
    def decide(self, s: StageSpec, input_fp: str, redo: bool) -> tuple[str, dict, str]:
        return decide(self.recipe, self.layout, s, input_fp, redo)

    def waves(self) -> list[list[StageSpec]]:
        """Consecutive stages that start from the same model, in recipe order."""
        out: list[list[StageSpec]] = []
        for s in self.recipe.stages:
            if out and out[-1][0].start == s.start:
                out[-1].append(s)
            else:
                out.append([s])
        return out

    def model(self, w: _Work) -> Path:
        """The model a stage trains: its extension of its input, or the input itself (``extend: none``)."""
        return w.src if w.s.method == NO_EXTENSION else self.layout.model(w.s)

    def output(self, s: StageSpec) -> Path:
        """The stage's result: its trained model, or its extended one when it does not train (``train: false``)."""
        return self.layout.model(s) if s.train is None else self.layout.train(s) / "final"

    def discard(self, s: StageSpec) -> None:
        """Delete what a stage wrote (to run it again): its folder and the layout's per-stage outputs."""
        for path in (self.layout.state(s), self.layout.model(s), self.layout.train(s), self.layout.train_yaml(s)):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # ------------------------------------------------------------ one wave
    def start(self, s: StageSpec, src: Path, resolved: dict, h: str) -> _Work:
        """The stage's progress record, kept from an earlier try when its hash is the same."""
        prog = _read(self.layout.state(s) / "progress.json")
        if prog is not None and prog.get("hash") != h:
            _say(f"   stage {s.name}: its config or input changed since it started; starting it again")
            self.discard(s)
            prog = None
        prog = prog or {"hash": h, "resolved": resolved, "commands": {}, "timings": {}}
        self.layout.state(s).mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.layout.state(s) / "progress.json", prog)
        return _Work(s, src, resolved, h, prog)

    @contextlib.contextmanager
    def step(self, w: _Work, name: str) -> Iterator[None]:
        """Time one step of one stage (wall and CPU seconds) into its progress record."""
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        yield
        w.prog["timings"][name] = round(time.perf_counter() - t0, 1)
        w.prog["timings"][f"{name}_cpu"] = round(cpu_seconds() - cpu0, 1)
        atomic_write_json(self.layout.state(w.s) / "progress.json", w.prog)

    def do_extend(self, w: _Work) -> None:
        s, cmds, model = w.s, w.prog["commands"], self.layout.model(w.s)
        if s.method == NO_EXTENSION or ("extend" in cmds and is_our_output(model)):
            return
        with self.step(w, "extend"):
            rope, cmds["extend"] = extend_step(w.src, model, method=s.method, factor=s.factor,
                                               target_length=s.target_length, params=s.params)
            _say(f"   {s.name}: extend ({s.method}): rope_parameters {json.dumps(rope)}")

    def do_eval_extended(self, w: _Work) -> None:
        model = self.layout.model(w.s)
        w.prog["extended"] = self.evaluate(self.layout.name(w.s, EXTENDED), model, w.s.eval,
                                           self.layout.eval(w.s, EXTENDED))
        atomic_write_json(self.layout.state(w.s) / "progress.json", w.prog)

    def do_pack(self, w: _Work) -> None:
        s, prog = w.s, w.prog
        key = stage_hash(w.resolved["data"])
        packs = Path(prog.get("packs", self.layout.packs(s)))
        if "pack" in prog["commands"] and is_our_output(packs, legacy=("manifest.json",)):
            self.packs[key] = packs
            return
        shared = self.packs.get(key)
        if shared is not None and is_our_output(shared, legacy=("manifest.json",)):
            prog["packs"] = str(shared)
            atomic_write_json(self.layout.state(s) / "progress.json", prog)
            _say(f"   {s.name}: pack: the same data as an earlier stage: its packs {shared}")
            return
        packs = self.layout.packs(s)
        with self.step(w, "pack"):
            if s.data.pretrain:
                prog["commands"]["pack"] = self.write_pretrain(s, packs)
                prog["packs"] = str(packs)
                self.packs[key] = packs
                return
            jsonls = [Path(p) for p in s.data.jsonl]
            if s.data.passkey_records:
                jsonls.insert(0, self.write_synthetic(s, self.layout.data(s)))
            counts, prog["commands"]["pack"] = pack_step(jsonls, self.base, packs, pack_length=s.data.pack_length,
                                                         train_on=s.data.train_on, seed=self.recipe.seed,
                                                         progress=self.progress, tokenizer=self.tokenizer)
            prog["packs"] = str(packs)
            _say(f"   {s.name}: pack: {counts['sequences']} conversations -> {counts['packs']} packs of "
                 f"{s.data.pack_length} tokens")
        self.packs[key] = packs

    def do_train(self, w: _Work) -> None:
        s, cmds = w.s, w.prog["commands"]
        out = self.layout.train(s)
        if "train" in cmds and (out / "final" / "config.json").is_file():
            return
        cfg = train_config(self.model(w), w.prog["packs"], out,
                           {**trainer_settings(s.train), "log.progress": self.progress})
        with self.step(w, "train"):
            _say(f"   {s.name}: train: {cfg.train.steps} steps, lr {cfg.optim.lr:g}, {s.nproc} rank(s)")
            summary, command = train_step(cfg, s.nproc, self.layout.train_yaml(s), callbacks=self.callbacks)
            if summary.get("status") != "done":
                raise LongctxError(f"{self.recipe.path}: stage {s.name!r}: training {summary.get('status')} at step "
                                   f"{summary.get('step')} (checkpoint saved); rerun the same command to continue")
            cmds["train"] = command

    def finish(self, w: _Work) -> dict:
        """Evaluate the trained model and write ``stage.json`` (the stage is finished when that file exists)."""
        s, prog = w.s, w.prog
        final = self.output(s)
        fingerprint = model_fingerprint(final)
        t0 = time.perf_counter()
        result = ({"passkey": {}, "ppl": {}, "cells": [], "command": None} if s.eval is None else
                  self.evaluate(self.layout.name(s, TRAINED), final, s.eval, self.layout.eval(s, TRAINED), fingerprint))
        prog["timings"]["eval"] = round(time.perf_counter() - t0, 1)
        record = {"name": s.name, "index": s.index, "hash": w.hash, "resolved": w.resolved, "input": str(w.src),
                  "output": str(final), "output_fingerprint": fingerprint, "context": s.context,
                  "commands": prog["commands"], "timings_s": prog["timings"],
                  "train_seconds": prog["timings"].get("train"), "train_cpu_seconds": prog["timings"].get("train_cpu"),
                  **{k: result[k] for k in ("passkey", "ppl", "cells")}, "eval_command": result["command"],
                  "packs": prog.get("packs"), **({"extended": prog["extended"]} if "extended" in prog else {})}
        atomic_write_json(self.layout.state(s) / "stage.json", record)
        return record

    def run_wave(self, wave: list[StageSpec], input_fp: str, src: Path, redo: bool) -> tuple[list[dict], bool]:
        """Run the unfinished stages of ``wave`` (all starting from ``src``) step by step; returns every stage's
        record, in order, and whether --from-stage has been reached."""
        records: dict[str, dict] = {}
        todo: list[_Work] = []
        for s in wave:
            redo = redo or s.name == self.from_stage
            action, resolved, h = self.decide(s, input_fp, redo)
            if action == "skip":
                _say(f"== stage {s.index} {s.name}: finished (hash {h}), skipped")
                record = _read(self.layout.state(s) / "stage.json")
                # where the model is now: the run may have been started from another directory, or moved
                record["output"] = str(self.output(s))
                records[s.name] = record
                if record.get("packs"):
                    self.packs.setdefault(stage_hash(record["resolved"]["data"]), Path(record["packs"]))
                continue
            if action == "redo":
                self.discard(s)
            what = f"trains at {s.context} tokens" if s.method == NO_EXTENSION else f"{s.method} to {s.context} tokens"
            _say(f"== stage {s.index} {s.name}: {what} (hash {h})")
            todo.append(self.start(s, src, resolved, h))
        for key, works, do in (("extend", todo, self.do_extend),
                               ("extended-eval", [w for w in todo if w.s.eval_extended], self.do_eval_extended),
                               ("pack", [w for w in todo if w.s.train is not None], self.do_pack),
                               ("train", [w for w in todo if w.s.train is not None], self.do_train)):
            if works:
                with self.phase(key, [w.s for w in works]):
                    for w in works:
                        do(w)
        if todo:
            with self.phase("eval", [w.s for w in todo]):
                for w in todo:
                    records[w.s.name] = self.finish(w)
        return [records[s.name] for s in wave], redo

    def list_commands(self, records: list[dict]) -> None:
        """The commands of a wave's stages for commands.sh, step by step as they ran."""
        for step, title in (("extend", "extend"), ("eval-extended", "evaluate the extended model"),
                            ("pack", "pack"), ("train", "train"), ("eval", "evaluate")):
            for r in records:
                command = (r["eval_command"] if step == "eval" else r.get("extended", {}).get("command")
                           if step == "eval-extended" else r["commands"].get(step))
                if command:
                    self.commands.append(f"# stage {r['name']}: {title}\n{command}")

    def write_pretrain(self, s: StageSpec, packs: Path) -> str:
        """The stage's ``pretrain`` packs (the shipped model's pretraining rows); returns the command that writes them."""
        p, seed, n = s.data.pretrain, self.recipe.seed, s.data.pretrain["rows"]
        if p["mixed"]:
            write_mixed_packs(packs, n, pack_len=s.data.pack_length, min_len=p["min_len"], seed=seed,
                              answer_weight=p["answer_weight"], overwrite=True, progress=self.progress)
            call = (f"write_mixed_packs({str(packs)!r}, {n}, pack_len={s.data.pack_length}, min_len={p['min_len']}, "
                    f"seed={seed}, answer_weight={p['answer_weight']})")
        else:
            write_pretrain_packs(packs, n, seq_len=s.data.pack_length, seed=seed, answer_weight=p["answer_weight"],
                                 overwrite=True, progress=self.progress)
            call = (f"write_pretrain_packs({str(packs)!r}, {n}, seq_len={s.data.pack_length}, seed={seed}, "
                    f"answer_weight={p['answer_weight']})")
        _say(f"   {s.name}: pack: {n} {'mixed packs' if p['mixed'] else 'sequences'} of {s.data.pack_length} tokens")
        return f"python -c {q('from longctx.recipe.pretrain_data import *; ' + call)}"

    def write_synthetic(self, s: StageSpec, path: Path) -> Path:
        """The stage's synthetic passkey conversations: long ones up to the pack length, plus ``short_share``
        of them at short lengths (up to the base context)."""
        d = s.data
        n_short = round(d.passkey_records * d.short_share)
        seed = self.recipe.seed
        filler = haystack_sentences(d.passkey_haystack)
        stream = d.passkey_stream or f"recipe-{s.name}"
        try:
            records = sft_records(self.tokenizer, d.passkey_records - n_short, min_tokens=d.passkey_min_tokens,
                                  max_tokens=d.passkey_max_tokens, seed=seed, stream=stream,
                                  edge_share=d.passkey_edge_share, filler=filler, qa_share=d.passkey_qa_share)
        except LongctxError as err:
            raise LongctxError(f"{self.recipe.path}: stage {s.name!r}: data.sources: {err} (raise min_tokens)") from None
        if n_short:  # passkey only: the short records keep the short skill, and 4 QA needles need room
            top = min(self.recipe.base_context or d.pack_length, d.pack_length)
            short = sft_records(self.tokenizer, n_short, min_tokens=min(d.short_min_tokens, top), max_tokens=top,
                                seed=seed, stream=f"{stream}-short", filler=filler)
            records += [{**r, "id": f"short-{i}"} for i, r in enumerate(short)]
        return write_sft_jsonl(path, records)

    # ------------------------------------------------------------ the whole run
    def prepare(self, overwrite: bool) -> None:
        out, marker = self.out, self.layout.marker
        base = [] if self.recipe.base_tiny else [self.base]  # a base the run makes lives in --out
        jsonls = [p for s in self.recipe.stages if s.data is not None for p in s.data.jsonl]
        check_out_vs_inputs(out, [*base, *jsonls, self.recipe.path])
        if out.exists() and any(out.iterdir()):
            if not (out / marker).is_file():
                raise LongctxError(f"--out {out}: exists and is not a {self.layout.kind} (no {marker}); "
                                   "choose another folder")
            if overwrite:
                shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / MARKER, self.recipe.to_dict())
        if marker != MARKER:
            atomic_write_json(out / marker, self.marker_data or {})

    def make_base(self) -> None:
        """``base: {tiny: ...}``: write the random checkpoint (once; a rerun keeps it) and list its command."""
        t = self.recipe.base_tiny
        sizes = {k: v for k, v in t.items() if k not in ("family", "seed")}
        if not (self.base / "config.json").is_file():
            _say(f"== base: a random {t['family']} checkpoint (seed {t['seed']}) in {self.base}")
            make_tiny_checkpoint(self.base, t["family"], seed=t["seed"], overwrite=True, **sizes)
        flags = "".join(f" {FLAGS[k]} {v:g}" if isinstance(v, float) else f" {FLAGS[k]} {v}" for k, v in sizes.items())
        self.commands.append(f"# the random base model\nlongctx make-tiny --out {q(self.base)} --family {t['family']} "
                             f"--seed {t['seed']}{flags}")

    def run(self, overwrite: bool = False, report: Callable[["RecipeRun", float], dict] = write_report) -> dict:
        """Run every stage (resuming), then write the report with ``report(run, seconds)``; returns its summary."""
        t0 = time.perf_counter()
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if not self.recipe.base_tiny:
            self.check_evals()  # before --out is written; a base the run makes is there only after prepare
        self.prepare(overwrite)
        if self.recipe.base_tiny:
            self.make_base()
            self.check_evals()
        if self.recipe.eval is not None:
            _say(f"== base {self.base}: evaluate at {self.recipe.eval.passkey_lengths}")
            with self.phase("base-eval", []):
                self.base_eval = self.evaluate("base", self.base, self.recipe.eval, self.layout.base_eval())
            self.commands.append(f"# evaluate the base model\n{self.base_eval['command']}")
        outputs = {BASE: (self.base, model_fingerprint(self.base))}
        redo = False
        for wave in self.waves():
            src, input_fp = outputs[wave[0].start]
            records, redo = self.run_wave(wave, input_fp, src, redo)
            for r in records:
                outputs[r["name"]] = (Path(r["output"]), r["output_fingerprint"])
            self.stages += records
            self.list_commands(records)
        return report(self, time.perf_counter() - t0)


def dry_run(recipe: Recipe, out: str | Path, from_stage: str | None = None) -> str:
    """The plan, as text, without writing anything: each stage's extension, data, training and evaluation,
    whether it would be skipped, run or refused, and the memory check (``plan`` section)."""
    if from_stage is not None:
        recipe.stage(from_stage)
    out = Path(out)
    layout = Layout(out)
    base = recipe.base or f"a random {recipe.base_tiny['family']} checkpoint the run makes"
    lines = [f"recipe {recipe.path}: base {base} (context {recipe.base_context or '?'}), out {out}"]
    on_disk = bool(recipe.base) and Path(recipe.base).is_dir()
    fps: dict[str, str | None] = {BASE: model_fingerprint(recipe.base) if on_disk else None}
    redo = False
    for i, s in enumerate(recipe.stages):
        redo = redo or s.name == from_stage
        status = "runs"
        input_fp = fps[s.start]
        fps[s.name] = None
        if input_fp is not None:
            try:
                action, _, h = decide(recipe, layout, s, input_fp, redo)
            except LongctxError as err:
                action, h = f"REFUSED: {err}", "-"
            done = _read(layout.state(s) / "stage.json")
            started = _read(layout.state(s) / "progress.json")
            if action == "run" and started and started.get("hash") == h:
                action = f"started earlier: continues from its last checkpoint (hash {h})"
            status = {"skip": f"finished, skipped (hash {h})", "run": f"runs (hash {h})",
                      "redo": f"runs again (--from-stage; hash {h})"}.get(action, action)
            fps[s.name] = done["output_fingerprint"] if action == "skip" and done else None
        start = "" if s.start == (recipe.stages[i - 1].name if i else BASE) else f" (from {s.start})"
        lines += [f"stage {s.index} {s.name}{start}: {status}", *describe(s)]
    if recipe.plan:
        lines.append(f"memory (longctx plan, {recipe.plan.get('model')}):")
        lines += [f"  {r['stage']}: {r['seq_len']} tokens, sp {r['sp']} on {r['gpus']} x {r['gpu_mem_gib']:g} GiB: "
                  f"{r['gib_per_gpu']:.1f} GiB per GPU, {'fits' if r['fits'] else 'DOES NOT FIT'}"
                  for r in plan_rows(recipe.plan, recipe.stages)]
    return "\n".join(lines)


def describe(s: StageSpec) -> list[str]:
    """The dry run's lines for one stage: its extension, data, training and evaluation."""
    extra = "".join(f", {k} {v}" for k, v in s.params.items())
    lines = [f"  extend: {s.method}" + (f" x{s.factor:g}" if s.factor else "")
             + (f" to {s.target_length}" if s.target_length else "") + extra + f" -> context {s.context or '?'}"]
    d = s.data
    if d is None:
        lines += ["  data: none", "  train: none (the output is the extended model)"]
    else:
        if d.pretrain:
            rows = "packs of mixed lengths" if d.pretrain["mixed"] else "rows"
            lines.append(f"  data: {d.pretrain['rows']} pretraining {rows}, packs of {d.pack_length}")
        else:
            lines.append(f"  data: {d.passkey_records} synthetic passkey records (short share {d.short_share:g}"
                         + (f", edge share {d.passkey_edge_share:g}" if d.passkey_edge_share else "")
                         + (f", QA share {d.passkey_qa_share:g}" if d.passkey_qa_share else "")
                         + (f", haystack {d.passkey_haystack}" if d.passkey_haystack != "noise" else "")
                         + (f", stream {d.passkey_stream}" if d.passkey_stream else "") + ")"
                         + (f" + {', '.join(d.jsonl)}" if d.jsonl else "") + f", packs of {d.pack_length}")
        cfg = from_dict(trainer_settings(s.train))
        lines.append(f"  train: {cfg.train.steps} steps, lr {cfg.optim.lr:g}, sp_degree {cfg.parallel.sp_degree} "
                     f"({cfg.parallel.layout}), {s.nproc} rank(s)"
                     + (f", LoRA r={cfg.peft.r}" + (" + embeddings/norms" if s.embeddings_norms else "")
                        + f" (final: {cfg.checkpoint.export})" if cfg.peft.enabled else "")
                     + (", with evaluation during training" if "eval" in s.train else ""))
    lines.append("  eval: none" if s.eval is None else
                 f"  eval: passkey at {s.eval.passkey_lengths} (n = {s.eval.samples} per length), "
                 f"ppl at {s.eval.ppl_lengths}" + (", also before training" if s.eval_extended else ""))
    return lines
