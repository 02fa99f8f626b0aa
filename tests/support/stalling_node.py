"""``longctx train`` for a node that stops answering: its ranks sleep after optimizer step
``$LONGCTX_TEST_STALL_AT`` (a hung or unreachable node), until the test kills its launcher.

Run by tests/distributed/test_multinode.py as ``torchrun ... -m support.stalling_node <longctx train arguments>``.
"""

import os
import sys
import time

from longctx.cli import main
from longctx.train.trainer import Trainer

STALL_AT = int(os.environ["LONGCTX_TEST_STALL_AT"])
_init = Trainer.__init__


def _stall(trainer, step, line) -> None:
    if step == STALL_AT:
        time.sleep(3600)


def _init_with_stall(self, cfg, callbacks=None) -> None:
    _init(self, cfg, [*(callbacks or []), _stall])


Trainer.__init__ = _init_with_stall
raise SystemExit(main(["train", *sys.argv[1:]]))
