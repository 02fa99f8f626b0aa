"""Run a recipe: per stage extend -> data -> pack -> train -> evaluate, each stage from the previous one's model.

Resumable at two levels. A finished stage (``stages/NN-name/stage.json``) is skipped when its hash
still matches: the hash covers the stage's resolved config (extension, data, the trainer keys that
change the weights, evaluation) and its inputs (the content fingerprint of the model it starts
from, :func:`eval_longbench.fingerprint.model_fingerprint`, and of every user JSONL file). A
finished stage whose hash changed is refused unless ``--from-stage`` names it or an earlier stage
(then it and every later stage run again). An unfinished stage continues where it stopped: its
finished steps (extension, packs) are kept, and the trainer resumes from its newest checkpoint.

Layout of ``out``: ``recipe.json`` (the resolved recipe; marks the folder as ours), ``base/eval``,
``stages/NN-name/{model,data,packs,train.yaml,train,eval,progress.json,stage.json}`` and ``report/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from eval_longbench.passkey import MAX_NEW_TOKENS, chat_overhead, per_length
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_json, check_out_vs_inputs, is_our_output
from longctx.recipe.synthetic import sft_records, write_sft_jsonl
from longctx.recipe.spec import HAYSTACKS, OWNED_TRAIN_KEYS, Recipe, StageSpec, trainer_settings

MARKER = "recipe.json"
HASH_VERSION = 1


def _say(msg: str) -> None:
    print(msg, flush=True)


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (the spawned training ranks):
    the honest cost on a shared machine, where wall time depends on the neighbours."""
    import resource

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
    from longctx.train.config import RESUME_NEUTRAL_KEYS, _flat, from_dict

    train = _flat(from_dict(trainer_settings(stage.train)).to_dict())
    train = {k: v for k, v in train.items() if k not in RESUME_NEUTRAL_KEYS and k not in OWNED_TRAIN_KEYS}
    data = asdict(stage.data)
    data["jsonl"] = [{"path": p, "sha256": file_sha(p)} for p in stage.data.jsonl]
    for k, unused in (("passkey_edge_share", 0.0), ("passkey_qa_share", 0.0), ("passkey_haystack", "noise")):
        if data[k] == unused:  # keys added later: absent when unused, so older stages keep their hash
            del data[k]
    if stage.data.passkey_haystack not in HAYSTACKS:  # a text file: its content decides the records
        data["passkey_haystack_sha256"] = file_sha(stage.data.passkey_haystack)
    return {"version": HASH_VERSION, "input": input_fingerprint, "seed": seed,
            "extend": {"method": stage.method, "factor": stage.factor, "target_length": stage.target_length,
                       "params": stage.params},
            "data": data, "train": train, "eval": _eval_hashed(stage.eval, seed)}


def _eval_hashed(ev, seed: int) -> dict:
    """The stage's evaluation as hashed: the after-stage keys, ``samples`` per (length, depth) cell as the
    recipe's eval section counted them before it became the trainer's eval spec (prompts per length), and
    ``seed``/``max_new_tokens`` only when they are not the recipe seed and 24, so stages finished before
    keep their hash."""
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
    from eval_longbench.haystack import read_text_sources, split_sentences

    if haystack == "bible":
        from eval_longbench.public_text import world_english_bible

        return split_sentences(world_english_bible())
    return split_sentences(read_text_sources([haystack]))


def stage_hash(resolved: dict) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved stages (for the refusal message)."""
    from longctx.train.config import _flat

    a, b = _flat(old), _flat(new)
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    from longctx.core.io import read_json

    return read_json(path)


def stage_dir(out: Path, s: StageSpec) -> Path:
    return out / "stages" / s.key()


def decide(recipe: Recipe, out: Path, s: StageSpec, input_fp: str, redo: bool) -> tuple[str, dict, str]:
    """(action, resolved, hash) for stage ``s`` starting from a model with fingerprint ``input_fp``: action is
    "skip" (finished, same hash), "run" or "redo" (``redo``: --from-stage reached); a changed finished stage
    without ``--from-stage`` is refused naming the keys that changed."""
    resolved = resolved_stage(s, input_fp, recipe.seed)
    h = stage_hash(resolved)
    done = _read(stage_dir(out, s) / "stage.json")
    if done is None:
        return "run", resolved, h
    if redo:
        return "redo", resolved, h
    if done.get("hash") == h:
        return "skip", resolved, h
    keys = changed_keys(done.get("resolved", {}), resolved)
    shown = ", ".join(keys[:6]) + (" ..." if len(keys) > 6 else "")
    raise LongctxError(f"{recipe.path}: stage {s.name!r}: finished with a different config or input "
                       f"(changed: {shown or 'hash'}); pass --from-stage {s.name} to redo it and the stages after it")


class RecipeRun:
    """One run of ``recipe`` into ``out``; :meth:`run` walks the stages (see the module doc)."""

    def __init__(self, recipe: Recipe, out: str | Path, *, from_stage: str | None = None, progress: bool = True,
                 callbacks: list[Callable] | None = None):
        self.recipe = recipe
        self.out = Path(out)
        self.from_stage = from_stage
        if from_stage is not None:
            recipe.stage(from_stage)  # names the stages when it is not one of them
        self.progress = progress
        self.callbacks = callbacks
        self.base = Path(recipe.base)
        if not (self.base / "config.json").is_file():
            raise LongctxError(f"{recipe.path}: base: {recipe.base} is not a checkpoint directory (download it first; "
                               "--dry-run works without it)")
        self.commands: list[str] = []
        self.stages: list[dict] = []
        self.base_eval: dict = {}
        self._tok = None

    # ------------------------------------------------------------ helpers
    @property
    def tokenizer(self):
        if self._tok is None:
            from packing.pipeline import load_tokenizer

            self._tok = load_tokenizer(str(self.base))
            if not getattr(self._tok, "chat_template", None):
                raise LongctxError(f"{self.recipe.path}: base: the tokenizer of {self.base} has no chat template "
                                   "(passkey data and evaluation are chat turns)")
        return self._tok

    @property
    def overhead(self) -> int:
        return chat_overhead(self.tokenizer)

    def stage_dir(self, s: StageSpec) -> Path:
        return stage_dir(self.out, s)

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
        self.prompt_lengths(self.recipe.eval)
        for s in self.recipe.stages:
            self.prompt_lengths(s.eval, f"stage {s.name!r}: eval")

    def evaluate(self, name: str, model: Path, ev, out: Path) -> dict:
        """Passkey + perplexity of one model; returns the per-window summary and records the commands."""
        from longctx.recipe.steps import evaluate_models

        prompts = self.prompt_lengths(ev)
        cells, rows, command = evaluate_models({name: model}, ev, prompt_lengths=prompts, out=out,
                                               progress=self.progress)
        acc = per_length(cells[name])
        return {"model": name, "path": str(model), "cells": cells[name], "command": command,
                "passkey": {str(w): {"prompt_tokens": p, **acc[p]} for w, p in zip(ev.passkey_lengths, prompts)},
                "ppl": {str(int(r["length"])): r["ppl"] for r in rows[name]}}

    # ------------------------------------------------------------ decisions
    def decide(self, s: StageSpec, input_fp: str, redo: bool) -> tuple[str, dict, str]:
        return decide(self.recipe, self.out, s, input_fp, redo)

    # ------------------------------------------------------------ one stage
    def run_stage(self, s: StageSpec, src: Path, resolved: dict, h: str) -> dict:
        from eval_longbench.fingerprint import model_fingerprint
        from longctx.recipe.steps import extend_step, pack_step, train_config, train_step

        sdir = self.stage_dir(s)
        prog = _read(sdir / "progress.json")
        if prog is not None and prog.get("hash") != h:
            _say(f"   stage {s.name}: its config or input changed since it started; starting it again")
            shutil.rmtree(sdir)
            prog = None
        prog = prog or {"hash": h, "resolved": resolved, "commands": {}, "timings": {}}
        cmds = prog["commands"]

        def mark(step: str, command: str, t0: float) -> None:
            cmds[step] = command
            prog["timings"][step] = round(time.perf_counter() - t0, 1)
            prog["timings"][f"{step}_cpu"] = round(cpu_seconds() - cpu0, 1)
            atomic_write_json(sdir / "progress.json", prog)

        sdir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(sdir / "progress.json", prog)
        model = sdir / "model"
        if "extend" not in cmds or not is_our_output(model):
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            rope, command = extend_step(src, model, method=s.method, factor=s.factor, target_length=s.target_length,
                                        params=s.params)
            _say(f"   extend ({s.method}): rope_parameters {json.dumps(rope)}")
            mark("extend", command, t0)
        packs = sdir / "packs"
        if "pack" not in cmds or not is_our_output(packs, legacy=("manifest.json",)):
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            jsonls = [Path(p) for p in s.data.jsonl]
            if s.data.passkey_records:
                jsonls.insert(0, self.write_synthetic(s, sdir / "data" / "sft.jsonl"))
            counts, command = pack_step(jsonls, self.base, packs, pack_length=s.data.pack_length,
                                        train_on=s.data.train_on, seed=self.recipe.seed, progress=self.progress,
                                        tokenizer=self.tokenizer)
            _say(f"   pack: {counts['sequences']} conversations -> {counts['packs']} packs of {s.data.pack_length} tokens")
            mark("pack", command, t0)
        final = sdir / "train" / "final"
        cfg = train_config(model, packs, sdir / "train", {**trainer_settings(s.train), "log.progress": self.progress})
        if "train" not in cmds or not (final / "config.json").is_file():
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            _say(f"   train: {cfg.train.steps} steps, lr {cfg.optim.lr:g}, {s.nproc} rank(s)")
            summary, command = train_step(cfg, s.nproc, sdir / "train.yaml", callbacks=self.callbacks)
            if summary.get("status") != "done":
                raise LongctxError(f"{self.recipe.path}: stage {s.name!r}: training {summary.get('status')} at step "
                                   f"{summary.get('step')} (checkpoint saved); rerun the same command to continue")
            mark("train", command, t0)
        t0 = time.perf_counter()
        result = self.evaluate(s.name, final, s.eval, sdir / "eval")
        prog["timings"]["eval"] = round(time.perf_counter() - t0, 1)
        record = {"name": s.name, "index": s.index, "hash": h, "resolved": resolved, "input": str(src),
                  "output": str(final), "output_fingerprint": model_fingerprint(final), "context": s.context,
                  "commands": cmds, "timings_s": prog["timings"],
                  "train_seconds": prog["timings"].get("train"), "train_cpu_seconds": prog["timings"].get("train_cpu"), **{k: result[k] for k in ("passkey", "ppl", "cells")},
                  "eval_command": result["command"]}
        atomic_write_json(sdir / "stage.json", record)  # the stage is finished when this file exists
        return record

    def write_synthetic(self, s: StageSpec, path: Path) -> Path:
        """The stage's synthetic passkey conversations: long ones up to the pack length, plus ``short_share``
        of them at short lengths (up to the base context)."""
        d = s.data
        n_short = round(d.passkey_records * d.short_share)
        seed = self.recipe.seed
        filler = haystack_sentences(d.passkey_haystack)
        try:
            records = sft_records(self.tokenizer, d.passkey_records - n_short, min_tokens=d.passkey_min_tokens,
                                  max_tokens=d.passkey_max_tokens, seed=seed, stream=f"recipe-{s.name}",
                                  edge_share=d.passkey_edge_share, filler=filler, qa_share=d.passkey_qa_share)
        except LongctxError as err:
            raise LongctxError(f"{self.recipe.path}: stage {s.name!r}: data.sources: {err} (raise min_tokens)") from None
        if n_short:  # passkey only: the short records keep the short skill, and 4 QA needles need room
            top = min(self.recipe.base_context or d.pack_length, d.pack_length)
            short = sft_records(self.tokenizer, n_short, min_tokens=min(d.short_min_tokens, top), max_tokens=top,
                                seed=seed, stream=f"recipe-{s.name}-short", filler=filler)
            records += [{**r, "id": f"short-{i}"} for i, r in enumerate(short)]
        return write_sft_jsonl(path, records)

    # ------------------------------------------------------------ the whole run
    def prepare(self, overwrite: bool) -> None:
        out = self.out
        check_out_vs_inputs(out, [self.base, *[p for s in self.recipe.stages for p in s.data.jsonl], self.recipe.path])
        if out.exists() and any(out.iterdir()):
            if not (out / MARKER).is_file():
                raise LongctxError(f"--out {out}: exists and is not a recipe run (no {MARKER}); choose another folder")
            if overwrite:
                shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / MARKER, self.recipe.to_dict())

    def run(self, overwrite: bool = False) -> dict:
        from eval_longbench.fingerprint import model_fingerprint
        from longctx.recipe.report import write_report

        t0 = time.perf_counter()
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.check_evals()
        self.prepare(overwrite)
        _say(f"== base {self.base}: evaluate at {self.recipe.eval.passkey_lengths}")
        self.base_eval = self.evaluate("base", self.base, self.recipe.eval, self.out / "base" / "eval")
        self.commands.append(f"# evaluate the base model\n{self.base_eval['command']}")
        src, input_fp, redo = self.base, model_fingerprint(self.base), False
        for s in self.recipe.stages:
            redo = redo or s.name == self.from_stage
            action, resolved, h = self.decide(s, input_fp, redo)
            if action == "skip":
                _say(f"== stage {s.index} {s.name}: finished (hash {h}), skipped")
                record = _read(self.stage_dir(s) / "stage.json")
                # where the model is now: the run may have been started from another directory, or moved
                record["output"] = str(self.stage_dir(s) / "train" / "final")
            else:
                if action == "redo":
                    shutil.rmtree(self.stage_dir(s))
                _say(f"== stage {s.index} {s.name}: {s.method} to {s.context} tokens (hash {h})")
                record = self.run_stage(s, src, resolved, h)
            self.stages.append(record)
            self.commands += [f"# stage {s.name}: {step}\n{c}" for step, c in record["commands"].items()]
            self.commands.append(f"# stage {s.name}: evaluate\n{record['eval_command']}")
            src, input_fp = Path(record["output"]), record["output_fingerprint"]
        summary = write_report(self, time.perf_counter() - t0)
        _say(f"\nrecipe done; report in {self.out / 'report'}")
        return summary


def dry_run(recipe: Recipe, out: str | Path, from_stage: str | None = None) -> str:
    """The plan, as text, without writing anything: each stage's extension, data, training and evaluation,
    whether it would be skipped, run or refused, and the memory check (``plan`` section)."""
    from longctx.recipe.spec import plan_rows
    from longctx.train.config import from_dict

    if from_stage is not None:
        recipe.stage(from_stage)
    out = Path(out)
    lines = [f"recipe {recipe.path}: base {recipe.base} (context {recipe.base_context or '?'}), out {out}"]
    input_fp = None
    if Path(recipe.base).is_dir():
        from eval_longbench.fingerprint import model_fingerprint

        input_fp = model_fingerprint(recipe.base)
    redo = False
    for s in recipe.stages:
        redo = redo or s.name == from_stage
        cfg = from_dict(trainer_settings(s.train))
        status = "runs"
        if input_fp is not None:
            try:
                action, _, h = decide(recipe, out, s, input_fp, redo)
            except LongctxError as err:
                action, h = f"REFUSED: {err}", "-"
            done = _read(stage_dir(out, s) / "stage.json")
            started = _read(stage_dir(out, s) / "progress.json")
            if action == "run" and started and started.get("hash") == h:
                action = f"started earlier: continues from its last checkpoint (hash {h})"
            status = {"skip": f"finished, skipped (hash {h})", "run": f"runs (hash {h})",
                      "redo": f"runs again (--from-stage; hash {h})"}.get(action, action)
            input_fp = done["output_fingerprint"] if action == "skip" and done else None
        extra = "".join(f", {k} {v}" for k, v in s.params.items())
        lines += [f"stage {s.index} {s.name}: {status}",
                  f"  extend: {s.method}" + (f" x{s.factor:g}" if s.factor else "")
                  + (f" to {s.target_length}" if s.target_length else "") + extra + f" -> context {s.context or '?'}",
                  f"  data: {s.data.passkey_records} synthetic passkey records (short share {s.data.short_share:g}"
                  + (f", edge share {s.data.passkey_edge_share:g}" if s.data.passkey_edge_share else "")
                  + (f", QA share {s.data.passkey_qa_share:g}" if s.data.passkey_qa_share else "")
                  + (f", haystack {s.data.passkey_haystack}" if s.data.passkey_haystack != "noise" else "") + ")"
                  + (f" + {', '.join(s.data.jsonl)}" if s.data.jsonl else "") + f", packs of {s.data.pack_length}",
                  f"  train: {cfg.train.steps} steps, lr {cfg.optim.lr:g}, sp_degree {cfg.parallel.sp_degree} "
                  f"({cfg.parallel.layout}), {s.nproc} rank(s)" + (", with evaluation during training"
                                                                    if "eval" in s.train else ""),
                  f"  eval: passkey at {s.eval.passkey_lengths} (n = {s.eval.samples} per length), "
                  f"ppl at {s.eval.ppl_lengths}"]
    if recipe.plan:
        lines.append(f"memory (longctx plan, {recipe.plan.get('model')}):")
        lines += [f"  {r['stage']}: {r['seq_len']} tokens, sp {r['sp']} on {r['gpus']} x {r['gpu_mem_gib']:g} GiB: "
                  f"{r['gib_per_gpu']:.1f} GiB per GPU, {'fits' if r['fits'] else 'DOES NOT FIT'}"
                  for r in plan_rows(recipe.plan, recipe.stages)]
    return "\n".join(lines)
