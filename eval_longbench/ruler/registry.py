"""The task registry: name -> :class:`~eval_longbench.ruler.base.RulerTask`, RULER's names.

Each family module (one file: generator, scorer choice, ``TASKS`` list) is one row of
:data:`FAMILIES`; a new task is a new file plus one row there (or :func:`register` at run time).
``tests/eval_longbench/test_ruler_run.py`` adds a toy family that way and runs it through ``longctx ruler``.
"""

from __future__ import annotations

from collections.abc import Sequence

from eval_longbench.ruler import cwe, fwe, niah, qa, vt
from eval_longbench.ruler.base import RulerTask
from longctx.core.errors import LongctxError

FAMILIES: tuple[Sequence[RulerTask], ...] = (
    niah.TASKS,
    vt.TASKS,
    cwe.TASKS,
    fwe.TASKS,
    qa.TASKS,
)
"""One row per family: its module's ``TASKS``, in the order ``--tasks all`` runs them."""


def _add(table: dict[str, RulerTask], task: RulerTask, replace: bool = False) -> RulerTask:
    if task.name in table and not replace:
        raise LongctxError(f"ruler task {task.name!r} is already registered")
    table[task.name] = task
    return task


def tasks_of(families: Sequence[Sequence[RulerTask]]) -> dict[str, RulerTask]:
    """``{name: task}`` over the rows; a name given twice is an error (it would hide a task)."""
    out: dict[str, RulerTask] = {}
    for family in families:
        for task in family:
            _add(out, task)
    return out


TASKS: dict[str, RulerTask] = tasks_of(FAMILIES)


def register(task: RulerTask, *, replace: bool = False) -> RulerTask:
    """Add ``task`` at run time; a second task under a taken name is an error unless ``replace``."""
    return _add(TASKS, task, replace)


def unregister(name: str) -> None:
    TASKS.pop(name, None)


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
