import pytest
import torch

from det_forget.forgetting import RunDirectory, TaskRunner, build_tasks, get_method
from det_forget.lora import LoraConfig, inject_lora, lora_layers, read_adapter_config


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


NAMES = ["a", "b", "c"]


def test_runner_merges_and_resets_between_tasks(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    config = LoraConfig(target_modules=["0", "2"])
    inject_lora(model, config)
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
        return {NAMES[c]: float((preds == c).float().mean() * 100) for c in range(3)}

    run_dir = RunDirectory(tmp_path / "run")
    runner = TaskRunner(
        model,
        tasks,
        class_names=NAMES,
        method=get_method("gs_lora"),
        task_type="classification",
        metric="accuracy",
        run_dir=run_dir,
        lora_config=config,
        info={"config_hash": "abc"},
        config_text="FORGET: {}\n",
    )
    history = runner.run(train, evaluate)
    assert seen_b_zero == [True, True]  # each task starts with a fresh adapter
    assert history[1]["before"] == history[0]["after"]
    assert history[0]["train"] == {"steps": 1}
    assert set(history[1]["summary"]) >= {"before", "after", "drop", "h_mean"}
    assert history[1]["classes"] == {"forget": ["b"], "retain": ["c"], "old": ["a"], "missing": []}
    # One run directory: both adapters with one manifest schema, the history, the config.
    read = run_dir.read_history()
    assert read.tasks == history and read.forgotten_classes == ["a", "b"]
    assert read.method == "gs_lora" and read.info["config_hash"] == "abc"
    assert run_dir.adapters() == [run_dir.adapter_dir(0), run_dir.adapter_dir(1)]
    meta = read_adapter_config(run_dir.adapter_dir(1))["lora_config"]["metadata"]
    assert meta["classes"]["old"] == ["a"] and meta["metrics_after"] == history[1]["after"]
    assert meta["method"] == "gs_lora" and meta["task_type"] == "classification"
    assert (tmp_path / "run" / "config.yaml").read_text() == "FORGET: {}\n"


def test_runner_writes_nothing_before_a_task_finishes(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    tasks = build_tasks([0, 1, 2], explicit=[[0]])
    runner = TaskRunner(
        model,
        tasks,
        class_names=NAMES,
        method=get_method("finetune"),
        task_type="classification",
        metric="accuracy",
        run_dir=RunDirectory(tmp_path / "run"),
        config_text="x: 1\n",
    )

    def failing(task):
        raise FloatingPointError("nan")

    with pytest.raises(FloatingPointError):
        runner.run(failing, lambda: dict.fromkeys(NAMES, 50.0))
    assert not (tmp_path / "run").exists()
