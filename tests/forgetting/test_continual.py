import pytest
import torch

from det_forget.forgetting import ContinualRunner, build_tasks
from det_forget.lora import LoraConfig, inject_lora, lora_layers


def test_build_tasks_from_sizes_and_seed():
    classes = list(range(10))
    tasks = build_tasks(classes, task_sizes=[2, 3], seed=123)
    again = build_tasks(classes, task_sizes=[2, 3], seed=123)
    assert [t.forget for t in tasks] == [t.forget for t in again]
    assert len(tasks[0].forget) == 2 and len(tasks[1].forget) == 3
    assert tasks[1].old == tasks[0].forget
    assert set(tasks[1].retain) == set(classes) - set(tasks[0].forget) - set(tasks[1].forget)
    assert build_tasks(classes, task_sizes=[2], seed=None)[0].forget == (0, 1)


def test_build_tasks_explicit_and_missing_groups():
    tasks = build_tasks(["a", "b", "c", "d"], explicit=[["b"], ["d"]], missing=["c"])
    g = tasks[1].groups()
    assert g.forget == ("d",) and g.old == ("b",) and g.retain == ("a",) and g.missing == ("c",)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"explicit": [["x"]]}, "unknown classes"),
        ({"explicit": [[]]}, "empty forget set"),
        ({"explicit": [["a", "b", "c"]]}, "forget every class"),
        ({"explicit": [["a"], ["a"]]}, "more than once"),
        ({"task_sizes": [2, 2]}, "need 4 classes"),
        ({}, "exactly one"),
    ],
)
def test_build_tasks_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_tasks(["a", "b", "c"], **kwargs)


def test_runner_merges_and_resets_between_tasks():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    inject_lora(model, LoraConfig(target_modules=["0", "2"]))
    tasks = build_tasks([0, 1, 2], explicit=[[0], [1]])
    x = torch.randn(8, 4)
    seen_b_zero = []

    def train(task):
        layers = [layer for _, layer in lora_layers(model)]
        seen_b_zero.append(
            all(torch.count_nonzero(b) == 0 for layer in layers for b in layer.lora_B.values())
        )
        with torch.no_grad():
            for layer in layers:
                for b in layer.lora_B.values():
                    b.normal_()
        return {"steps": 1}

    def evaluate():
        preds = model(x).argmax(1)
        return {c: float((preds == c).float().mean() * 100) for c in range(3)}

    saved = []
    history = ContinualRunner(
        model,
        tasks,
        train_task=train,
        evaluate=evaluate,
        save_task=lambda t, r: saved.append(t.index),
    ).run()
    assert seen_b_zero == [True, True]  # each task starts with a fresh adapter
    assert saved == [0, 1]
    assert history[1]["before"] == history[0]["after"]
    assert history[0]["train"] == {"steps": 1}
    assert set(history[1]["summary"]) >= {"before", "after", "drop", "h_mean"}
