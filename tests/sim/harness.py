"""The pytest side: run one simulator case in a child process with the shim preloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sim.shim import ShimUnavailable, shim_library

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def run_case(target: str, timeout: float = 600, **kwargs) -> dict:
    """Run ``sim.cases``-style ``module:function`` under the simulator; its returned dict.

    Skips the test when the shim cannot be built here (no compiler, a GPU build of torch)."""
    try:
        lib = shim_library()
    except ShimUnavailable as err:
        pytest.skip(f"CUDA simulator unavailable: {err}")
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{lib}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(lib)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["TRANSFORMERS_VERBOSITY"] = "error"
    with tempfile.TemporaryDirectory() as tmp:
        args, out = Path(tmp) / "kwargs.json", Path(tmp) / "result.json"
        args.write_text(json.dumps(kwargs))
        done = subprocess.run([sys.executable, "-m", "sim.child", target, str(args), str(out)], env=env,
                              cwd=tmp, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not out.exists():
            raise AssertionError(f"simulated case {target} failed (exit {done.returncode}):\n{done.stderr[-6000:]}")
        return json.loads(out.read_text())
