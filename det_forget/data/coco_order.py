"""GS-LoRA's continual COCO protocol: 7 tasks x 10 classes cut from a seeded shuffle.

GS-LoRA's detection code shuffles the 80 COCO category ids (ascending) with
``np.random.seed(123); np.random.shuffle(ids)`` and lets task ``t`` (from 0) forget
``order[70 - 10 t : 80 - 10 t]``: the first task is the *last* ten ids of the shuffled
order, the next task the ten before them, and so on. :func:`reference_coco_tasks`
recomputes those tasks, by class name, with a private NumPy generator seeded the same way
(``np.random.RandomState(123).shuffle`` draws exactly what the global ``np.random.seed(123);
np.random.shuffle`` does, without touching the global state).
"""

from __future__ import annotations

import numpy as np

__all__ = ["COCO_THING_IDS", "reference_coco_order", "reference_coco_tasks"]


def _coco_things() -> list[dict]:
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    return sorted((c for c in COCO_CATEGORIES if c["isthing"]), key=lambda c: c["id"])


#: The 80 COCO category ids (``1..90`` with gaps), ascending.
COCO_THING_IDS: tuple[int, ...] = tuple(c["id"] for c in _coco_things())


def reference_coco_order(seed: int = 123) -> list[int]:
    """The 80 COCO category ids in GS-LoRA's shuffled order (``np.random`` with ``seed``)."""
    ids = np.array(COCO_THING_IDS)
    np.random.RandomState(seed).shuffle(ids)
    return [int(i) for i in ids]


def reference_coco_tasks(
    num_tasks: int = 7, task_size: int = 10, seed: int = 123
) -> list[list[str]]:
    """The class names each continual task forgets, in task order.

    Task ``t`` forgets ``order[N - task_size (t + 1) : N - task_size t]`` with ``N = 80``
    (for 7 x 10: ``order[70 - 10 t : 80 - 10 t]``), the ids in the order they appear.

    Raises:
        ValueError: the tasks would need more than the 80 classes.
    """
    if num_tasks < 1 or task_size < 1 or num_tasks * task_size > len(COCO_THING_IDS):
        raise ValueError(
            f"{num_tasks} tasks x {task_size} classes do not fit in COCO's "
            f"{len(COCO_THING_IDS)} classes"
        )
    names = {c["id"]: c["name"] for c in _coco_things()}
    order = reference_coco_order(seed)
    n = len(order)
    return [
        [names[i] for i in order[n - task_size * (t + 1) : n - task_size * t]]
        for t in range(num_tasks)
    ]
