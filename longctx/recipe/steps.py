"""The pipeline steps the quick start and ``longctx recipe`` share: extend, synthetic data, pack, train, evaluate.

Each function calls the library function behind one ``longctx`` subcommand and returns, with its
result, the shell line that repeats it (for ``commands.sh``), so every number in a report comes
from a run the user can repeat on their own checkpoint. One home for these steps: the recipe runner
(:mod:`longctx.recipe.runner`) only decides *which* steps run with *which* values.
"""

from __future__ import annotations

import gc
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eval_longbench.haystack import builtin_text
from eval_longbench.models import load_model
from eval_longbench.passkey import passkey_cells
from eval_longbench.ppl import run_ppl
from eval_longbench.results import ResultStore
from longctx.core.errors import LongctxError
from longctx.core.io import atomic_write_text
from longctx.train.config import EvalConfig, dump_yaml, from_dict
from longctx.train.run import launch_local
from longctx.train.trainer import Trainer
from packing.pipeline import PackConfig, pack_files
from rope_scaling.extend import extend_checkpoint
from rope_scaling.registry import get_method


def q(p: Path | str) -> str:
    """``p`` quoted for a shell line."""
    return shlex.quote(str(p))


def _flag_value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # a whole number, so commands.sh repeats it exactly
    if isinstance(v, (list, tuple)):
        return ",".join(_flag_value(x) for x in v)
    return str(v)


def extend_flags(method: str, factor: float | None, target_length: int | None, params: Mapping[str, Any]) -> str:
    """``--method yarn --factor 8 --beta-fast 32``: the ``longctx extend`` flags of one extension."""
    parts = [f"--method {method}"]
    if factor is not None:
        parts.append(f"--factor {_flag_value(factor)}")
    if target_length is not None:
        parts.append(f"--target-length {target_length}")
    m = get_method(method)
    for name, value in params.items():
        p = m.param(name)
        if p.type is bool:
            if value != p.default:
                parts.append(p.flag)
        else:
            parts.append(f"{p.flag} {_flag_value(value)}")
    return " ".join(parts)


def extend_step(src: Path | str, out: Path | str, *, method: str, factor: float | None = None,
                target_length: int | None = None, params: Mapping[str, Any] | None = None) -> tuple[dict, str]:
    """Write ``out`` = ``src`` with rescaled RoPE (``longctx extend``); returns (rope_parameters, command)."""
    params = dict(params or {})
    rope = extend_checkpoint(src, out, method=method, factor=factor, target_length=target_length, overwrite=True,
                             **params)
    return rope, f"longctx extend {q(src)} --out {q(out)} " + extend_flags(method, factor, target_length, params)


def pack_step(jsonls: Sequence[Path], tokenizer_dir: Path | str, out: Path, *, pack_length: int, train_on: str,
              seed: int, progress: bool, tokenizer=None) -> tuple[dict, str]:
    """Pack chat JSONL files into ``out`` (``longctx pack``); returns (manifest counts, command)."""
    res = pack_files(list(jsonls), tokenizer_dir, out, PackConfig(pack_length=pack_length, train_on=train_on, seed=seed,
                                                                 progress=progress),
                     overwrite=True, tokenizer=tokenizer)
    files = " ".join(q(j) for j in jsonls)
    return res.manifest["counts"], (f"longctx pack {files} --tokenizer {q(tokenizer_dir)} --pack-length {pack_length} "
                                    f"--train-on {train_on} --seed {seed} --out {q(out)}")


def train_config(model: Path | str, packs: Path | str, out: Path | str, settings: Mapping[str, Any]):
    """A :class:`~longctx.train.config.RunConfig` for ``model`` on ``packs`` writing to ``out``.

    ``settings``: dotted trainer keys (``optim.lr``) or a nested mapping of sections, applied in order
    with the trainer's own type checks (:func:`longctx.train.config.from_dict`), so a bad value fails
    naming its key exactly as ``longctx train --set`` would.
    """
    cfg = from_dict(dict(settings), "train")
    cfg.model.path = str(model)
    cfg.data.path = str(packs)
    cfg.checkpoint.out = str(out)
    return cfg


def train_step(cfg, nproc: int, yaml_path: Path, callbacks: list[Callable] | None = None) -> tuple[dict, str]:
    """Write the trainer YAML and train (``longctx train --config``); returns (rank 0 summary, command).

    One rank runs in this process (``callbacks`` reach the trainer: tests use them to interrupt a run);
    more ranks are local gloo processes, the same code path as torchrun.
    """
    atomic_write_text(yaml_path, dump_yaml(cfg))
    try:
        if nproc == 1:
            summary = Trainer(cfg, callbacks=callbacks).run()
            summary.pop("history", None)
        else:
            summary = launch_local(cfg, nproc, timeout=7 * 24 * 3600.0)[0]
    except RuntimeError as err:
        tail = str(err).strip().splitlines()[-1] if str(err).strip() else str(err)
        raise LongctxError(f"{yaml_path}: training failed: {tail}") from None
    return summary, f"longctx train --config {q(yaml_path)} --nproc {nproc}"


def evaluate_models(models: Mapping[str, Path | str], ev: EvalConfig, *, prompt_lengths: Sequence[int], out: Path,
                    progress: bool, fingerprints: Mapping[str, str] | None = None) -> tuple[dict, dict, str]:
    """Passkey grid + sliding-window perplexity for each model (one load per model), as ``ev`` says.

    ``ev``: the eval spec (``passkey_lengths`` are windows; ``samples`` prompts per length, spread evenly
    over ``depths``; ``ppl_lengths`` default to the windows); ``prompt_lengths``: the passkey prompt of
    each window (``window - chat overhead``, so prompt + chat template + reply fill it). Results go to
    ``out/needle`` and ``out/ppl`` (resumable; ``fingerprints``: each model's content fingerprint, bound to
    its name there, so a results file never mixes two checkpoints under one name). Returns (needle cells per model, ppl rows per model, the
    ``longctx needle`` + ``longctx ppl`` commands).
    """
    ppl_windows = list(ev.ppl_lengths or ev.passkey_lengths)
    per_cell = ev.samples // ev.depths
    need = max(ppl_windows)
    text = builtin_text(need)  # exactly what `longctx ppl --text builtin` scores
    ppl_store = ResultStore(out / "ppl" / "results.json", {"text": ["builtin"], "stride": ev.ppl_stride, "max_tokens": need})
    cells: dict[str, list[dict]] = {}
    rows: dict[str, list[dict]] = {}
    for name, path in models.items():
        model, tok = load_model(path)
        cells[name] = passkey_cells(path, prompt_lengths, samples_per_cell=per_cell, depths=ev.depths, seed=ev.seed,
                                    results=out / "needle" / "results.json", name=name, progress=progress,
                                    model=model, tokenizer=tok, max_new_tokens=ev.max_new_tokens,
                                    model_id=(fingerprints or {}).get(name))
        ids = tok(text, add_special_tokens=True)["input_ids"]
        rows[name] = run_ppl(model, ids, ppl_windows, ppl_store, model_name=name, stride=ev.ppl_stride, max_tokens=need,
                             progress=progress, model_id=(fingerprints or {}).get(name))
        del model
        gc.collect()
    paths = " ".join(q(p) for p in models.values())
    names = ",".join(models)
    command = (f"longctx needle {paths} --names {names} --task passkey --chat --lengths "
               f"{','.join(map(str, prompt_lengths))} --depths {ev.depths} --samples {per_cell} --seed {ev.seed} "
               f"--max-new-tokens {ev.max_new_tokens} --out {q(out / 'needle')}\n"
               f"longctx ppl {paths} --names {names} --lengths {','.join(map(str, ppl_windows))} --text builtin "
               f"--stride {ev.ppl_stride} --out {q(out / 'ppl')}")
    return cells, rows, command


def write_commands_sh(path: Path, header: Sequence[str], commands: Sequence[str]) -> None:
    """An executable bash script: ``header`` comment lines, then each ``# why`` + command block."""
    script = ["#!/usr/bin/env bash", *(f"# {h}" for h in header), "set -euo pipefail", ""]
    script += [c + "\n" for c in commands]
    atomic_write_text(path, "\n".join(script))
    path.chmod(0o755)
