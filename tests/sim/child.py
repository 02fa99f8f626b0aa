"""Entry of a simulated process: ``python -m sim.child module:function kwargs.json result.json``.

Run by :func:`sim.harness.run_case` with the shim preloaded. Installs the fake device, calls the
case with its keyword arguments, writes the returned dict as JSON (an exception is re-raised:
the harness shows the traceback).
"""

import json
import os
import sys


def main() -> None:
    target, kwargs_path, out_path = sys.argv[1:4]
    from sim import runtime

    runtime.install()
    import importlib

    module, _, name = target.partition(":")
    result = getattr(importlib.import_module(module), name)(**json.loads(open(kwargs_path).read()))
    with open(out_path, "w") as f:
        json.dump(result, f, default=str)
    # Skip interpreter teardown: the autograd engine's worker thread for the fake CUDA device is still alive
    # then, and destroying it raced into std::terminate ("terminate called without an active exception",
    # exit -6) in ~3 of 12 runs of loss_head_dtypes after its result was written. Nothing is left to run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
