"""The task registry (one module per task, as in jiant): name -> Task.

Importing this package registers every task; the modules import nothing heavy, so that
``xit-dist validate`` stays fast.
"""

from __future__ import annotations

from xit_dist.errors import SpecError
from xit_dist.tasks.base import DataSource, PairColumns, Task

_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in _REGISTRY:
        raise RuntimeError(f"task {task.name!r} registered twice")
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown task {name!r}; known: {', '.join(task_names())}") from None


def task_names() -> list[str]:
    return sorted(_REGISTRY)


# Registration happens on import; keep these imports last.
from xit_dist.tasks import anli_plus, bucc, ccg, commonsenseqa, cosmosqa, hellaswag, lareqa, mewslix, mlqa, mnli, panx, pawsx, qqp, squad, squad_v2, sst2, tatoeba, tydiqa, udpos, xcopa, xnli, xquad  # noqa: E402,F401

__all__ = ["DataSource", "PairColumns", "Task", "get_task", "register", "task_names"]
