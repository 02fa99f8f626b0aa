"""The task registry: name -> :class:`~eval_longbench.ruler.base.RulerTask`, RULER's names.

Each family module (one file: generator, scorer choice, ``TASKS`` list) is listed once in
:data:`FAMILIES`; a new task is a new file plus one line there (or :func:`register` at run time,
as the tests do).
"""

from __future__ import annotations

import importlib

from eval_longbench.ruler.base import RulerTask
from longctx.core.errors import LongctxError

FAMILIES = (
    "eval_longbench.ruler.niah",
    "eval_longbench.ruler.vt",
    "eval_longbench.ruler.cwe",
    "eval_longbench.ruler.fwe",
    "eval_longbench.ruler.qa",
)

TASKS: dict[str, RulerTask] = {}


def register(task: RulerTask, *, replace: bool = False) -> RulerTask:
    """Add ``task``; a second task under a taken name is an error unless ``replace``."""
    if task.name in TASKS and not replace:
        raise LongctxError(f"ruler task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    TASKS.pop(name, None)


for _mod in FAMILIES:
    for _task in importlib.import_module(_mod).TASKS:
        register(_task)


def select_tasks(spec: str, *, available: set[str] = frozenset()) -> list[RulerTask]:
    """``all`` (every task whose input is present: ``available`` names the supplied inputs, e.g. ``qa``)
    or a comma list of names; an unknown name lists the registered ones."""
    if spec.strip() == "all":
        return [t for t in TASKS.values() if t.needs is None or t.needs in available]
    out = []
    for name in filter(None, (p.strip() for p in spec.split(","))):
        if name not in TASKS:
            raise LongctxError(f"--tasks: unknown {name!r}; choose all or some of {', '.join(TASKS)}")
        task = TASKS[name]
        if task.needs is not None and task.needs not in available:
            raise LongctxError(f"--tasks: {name} needs --{task.needs}-file (a file you supply; nothing is downloaded)")
        out.append(task)
    if not out:
        raise LongctxError("--tasks: empty")
    return list({t.name: t for t in out}.values())
