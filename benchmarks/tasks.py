"""The task table, as data (like OGB's master table): task name -> the task object that owns
its data, split, protocol, metrics, runner and scorer (:class:`benchmarks.task.Task`).

``python -m benchmarks.run`` and the leaderboard both read this table; a results file records
the task version, data variant and split hash it was made with. Task objects are imported
only when used.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

from .task import Task

# name -> "module:Class" of its task object
TASKS: dict[str, str] = {
    "qm9": "benchmarks.task_qm9:QM9Task",
    "qm9-small": "benchmarks.task_qm9:QM9SmallTask",
    "qm9-tensor": "benchmarks.task_qm9_tensor:QM9TensorTask",
    "pointcloud-reconstruction": "benchmarks.task_pointcloud:PointCloudTask",
    "density-reconstruction": "benchmarks.task_density:DensityTask",
    "crystal-energy": "benchmarks.task_crystal:CrystalEnergyTask",
}


def task_names() -> list[str]:
    """Names of all tasks, in table order."""
    return list(TASKS)


@lru_cache(maxsize=None)
def get_task(name: str) -> Task:
    """The task object called ``name``.

    Raises:
        KeyError: naming the unknown task and the known ones.
    """
    try:
        target = TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}") from None
    module, _, cls = target.partition(":")
    task = getattr(importlib.import_module(module), cls)()
    if task.name != name:
        raise RuntimeError(f"task table row {name!r} names {target}, whose task is {task.name!r}")
    return task


def all_tasks() -> dict[str, Task]:
    """Every task object, by name."""
    return {name: get_task(name) for name in TASKS}
