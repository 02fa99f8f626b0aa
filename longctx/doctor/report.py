"""The doctor's verdicts: one :class:`Check` row per check, the table on stdout, the JSON file, the exit status.

Every check, whatever it measures, ends as a row (name, PASS / FAIL / SKIP, a few numbers, a short
detail) so that one table shows a user everything and one rule gives the exit status: 1 when any
row FAILED, 0 otherwise. A SKIP always says why (no CUDA, one rank, a package missing), so an
all-SKIP run is never mistaken for a proof.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from longctx.core.io import atomic_write_text

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class Check:
    """One row: ``numbers`` are what the check measured (relative errors, tokens/s, GiB), ``detail`` why."""

    name: str
    status: str
    numbers: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in (PASS, FAIL, SKIP):
            raise ValueError(f"Check {self.name}: status {self.status!r} is not PASS, FAIL or SKIP")


def skipped(name: str, why: str) -> Check:
    return Check(name, SKIP, detail=why)


def failed_with(name: str, err: BaseException) -> Check:
    """A check that raised is a FAIL with the error's first line: a crash in a kernel is a finding too."""
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return Check(name, FAIL, detail=f"{type(err).__name__}: {first}".rstrip(": "))


def exit_status(checks: list[Check]) -> int:
    """1 when any check failed, else 0."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def numbers_text(numbers: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in numbers.items() if v is not None)


def render_table(checks: list[Check]) -> str:
    """A plain-text table, one row per check: name, status, numbers, detail."""
    rows = [("check", "status", "numbers", "detail")]
    rows += [(c.name, c.status, numbers_text(c.numbers), c.detail) for c in checks]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip() for r in rows]
    lines.insert(1, "-" * min(120, max(len(line) for line in lines)))
    counts = {s: sum(c.status == s for c in checks) for s in (PASS, FAIL, SKIP)}
    lines.append(f"\n{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped")
    return "\n".join(lines)


def to_json(checks: list[Check], env: dict[str, Any], meta: dict[str, Any]) -> str:
    """The report as JSON: ``ok``, ``exit_status``, ``env``, the run's settings and every check."""
    status = exit_status(checks)
    doc = {"ok": status == 0, "exit_status": status, **meta, "env": env, "checks": [asdict(c) for c in checks]}
    return json.dumps(doc, indent=1, default=str, allow_nan=True)


def write_json(path: str, checks: list[Check], env: dict[str, Any], meta: dict[str, Any]) -> None:
    """Atomically (re)write the report: a reader never sees half a file."""
    atomic_write_text(path, to_json(checks, env, meta))
