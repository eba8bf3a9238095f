"""GS-LoRA's continual COCO order, recomputed from its seed, and the configs that use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from det_forget.data.coco_order import COCO_THING_IDS, reference_coco_order, reference_coco_tasks
from det_forget.engine.inference import build_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_first_two_tasks_are_pinned():
    tasks = reference_coco_tasks()
    assert tasks[0] == [
        "microwave", "skateboard", "umbrella", "banana", "sports ball",
        "book", "apple", "couch", "horse", "keyboard",
    ]  # fmt: skip
    assert tasks[1] == [
        "truck", "sandwich", "toilet", "chair", "scissors",
        "bottle", "car", "cell phone", "cake", "orange",
    ]  # fmt: skip


def test_order_is_numpy_global_shuffle_of_ascending_ids_and_tasks_cut_from_the_end():
    ids = np.array(sorted(COCO_THING_IDS))
    state = np.random.get_state()
    try:
        np.random.seed(123)
        np.random.shuffle(ids)
    finally:
        np.random.set_state(state)
    order = reference_coco_order()
    assert order == ids.tolist()
    assert len(COCO_THING_IDS) == 80 and sorted(order) == list(COCO_THING_IDS)
    tasks = reference_coco_tasks()
    assert len(tasks) == 7 and all(len(t) == 10 for t in tasks)
    flat = [c for t in tasks for c in t]
    assert len(set(flat)) == 70  # disjoint; the 10 classes of order[:10] are never forgotten


def test_global_numpy_state_is_untouched():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    reference_coco_tasks()
    assert np.random.rand() == expected


def test_too_many_tasks_refused():
    with pytest.raises(ValueError, match="do not fit"):
        reference_coco_tasks(num_tasks=9, task_size=10)


def test_continual_configs_use_the_reference_order():
    cfg = build_config(CONFIGS / "detr/deformable_detr_r50_coco_forget_continual.yaml")
    assert [list(t) for t in cfg.FORGET.TASKS] == reference_coco_tasks()
    single = build_config(CONFIGS / "detr/deformable_detr_r50_coco_forget.yaml")
    assert list(single.FORGET.CLASSES) == reference_coco_tasks()[0]
