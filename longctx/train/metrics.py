"""Training metrics: one JSON line per logged step, TensorBoard when installed, a tqdm bar on rank 0."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from longctx.core.io import atomic_write_text


def truncate_metrics(path: Path, step: int) -> int:
    """Keep only the lines of ``path`` for steps <= ``step`` (where a resumed run starts); returns lines dropped.

    A killed run logged steps after its last checkpoint; the resumed run logs them again, so without
    this every such step would appear twice. A torn last line (killed mid-write) is dropped too.
    """
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line_step = json.loads(raw)["step"]
        except (ValueError, KeyError, TypeError):
            line_step = None
        if isinstance(line_step, int) and line_step <= step:
            keep.append(raw + "\n")
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(keep))
    return dropped


class Metrics:
    """Rank-0 sink for step metrics; other ranks get a no-op instance (``enabled=False``)."""

    def __init__(self, out: str | Path, total_steps: int, start_step: int = 0, *, enabled: bool = True,
                 progress: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.start_time = time.perf_counter()
        self.start_step = start_step
        self.tokens = 0
        self.bar = None
        self.tb = None
        self.file = None
        if not enabled:
            return
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        truncate_metrics(out / "metrics.jsonl", start_step)
        self.file = open(out / "metrics.jsonl", "a", encoding="utf-8")
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (optional: tensorboard may be absent)

                self.tb = SummaryWriter(str(out / "tb"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def log(self, step: int, stats: dict[str, Any], write: bool = True) -> dict[str, Any]:
        """Record step ``step`` (1-based); returns the line written (with tokens/s and elapsed)."""
        self.tokens += int(stats.get("tokens", 0))
        elapsed = time.perf_counter() - self.start_time
        line = {"step": step, **stats, "tokens_per_s": self.tokens / elapsed if elapsed > 0 else 0.0,
                "elapsed_s": elapsed}
        if not self.enabled:
            return line
        if write and self.file is not None:
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()
        if self.tb is not None and write:
            for k in ("loss", "lr", "grad_norm", "tokens_per_s"):
                if k in line:
                    self.tb.add_scalar(f"train/{k}", line[k], step)
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{line['loss']:.4f}", tok_s=f"{line['tokens_per_s']:.0f}")
        return line

    def record(self, line: dict[str, Any]) -> None:
        """Write a non-step line (an evaluation, ``"event": "eval"``) and its numbers to TensorBoard."""
        if not self.enabled:
            return
        if self.file is not None:
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()
        if self.tb is not None:
            step = line["step"]
            for kind in ("passkey", "ppl"):
                for length, value in line.get(kind, {}).items():
                    self.tb.add_scalar(f"eval/{kind}_{length}", value, step)
            for k in ("passkey", "passkey_base", "ppl", "ppl_base"):
                if k in line.get("guard", {}):
                    self.tb.add_scalar(f"eval/guard_{k}", line["guard"][k], step)
            self.tb.add_scalar("eval/seconds", line.get("seconds", 0.0), step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
