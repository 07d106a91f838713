"""The task table, as in jiant: every task xit-dist knows, by name, and the lookups on it.

A task is one module under ``xit_dist/tasks/`` that defines a ``Task``; adding one means adding
its import and its name to ``TASKS`` below. The task modules import nothing heavy, so reading
this table keeps ``xit-dist validate`` fast.
"""

from __future__ import annotations

from xit_dist.errors import SpecError
from xit_dist.tasks.anli_plus import ANLI_PLUS
from xit_dist.tasks.base import Task
from xit_dist.tasks.bucc import BUCC
from xit_dist.tasks.ccg import CCG
from xit_dist.tasks.commonsenseqa import COMMONSENSEQA
from xit_dist.tasks.cosmosqa import COSMOSQA
from xit_dist.tasks.hellaswag import HELLASWAG
from xit_dist.tasks.lareqa import LAREQA
from xit_dist.tasks.mewslix import MEWSLIX
from xit_dist.tasks.mlqa import MLQA
from xit_dist.tasks.mnli import MNLI
from xit_dist.tasks.panx import PANX
from xit_dist.tasks.pawsx import PAWSX
from xit_dist.tasks.qqp import QQP
from xit_dist.tasks.squad import SQUAD
from xit_dist.tasks.squad_v2 import SQUAD_V2
from xit_dist.tasks.sst2 import SST2
from xit_dist.tasks.tatoeba import TATOEBA
from xit_dist.tasks.tydiqa import TYDIQA
from xit_dist.tasks.udpos import UDPOS
from xit_dist.tasks.xcopa import XCOPA
from xit_dist.tasks.xnli import XNLI
from xit_dist.tasks.xquad import XQUAD

TASKS: tuple[Task, ...] = (  # alphabetical; each task's module docstring says what it is
    ANLI_PLUS, BUCC, CCG, COMMONSENSEQA, COSMOSQA, HELLASWAG, LAREQA, MEWSLIX, MLQA, MNLI, PANX,
    PAWSX, QQP, SQUAD, SQUAD_V2, SST2, TATOEBA, TYDIQA, UDPOS, XCOPA, XNLI, XQUAD,
)


def _by_name(tasks: tuple[Task, ...]) -> dict[str, Task]:
    """The table keyed by name; two tasks under one name is a programming error, caught on import."""
    table: dict[str, Task] = {}
    for task in tasks:
        if task.name in table:
            raise RuntimeError(f"task {task.name!r} is in the task table twice")
        table[task.name] = task
    return table


_BY_NAME = _by_name(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; SpecError listing the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SpecError(f"unknown task {name!r}; known: {', '.join(task_names())}") from None


def task_names() -> list[str]:
    return sorted(_BY_NAME)


__all__ = ["TASKS", "get_task", "task_names"]
