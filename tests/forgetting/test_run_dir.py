"""RunDirectory: the one reader/writer of run folders."""

from __future__ import annotations

import json

import pytest

from det_forget.forgetting import LegacyRunError, RunDirectory, RunHistory, build_tasks
from det_forget.forgetting.run_dir import RUN_FORMAT_VERSION

NAMES = ["cat", "dog", "bird"]


def _history(adapters: bool = True) -> RunHistory:
    tasks = build_tasks(range(len(NAMES)), explicit=[[1], [2]])
    records = [
        RunDirectory.task_record(
            task,
            NAMES,
            before=None if task.index == 0 else {"cat": 90.0, "dog": 1.0, "bird": 80.0},
            after={"cat": 89.0, "dog": 1.0, "bird": 0.5 if task.index else None},
            summary={"h_mean": 70.0} if task.index else None,
            adapter=f"adapters/task_{task.index:02d}" if adapters else None,
            train={"steps": 10},
            details={"AP50_after": {"cat": 95.0}},
        )
        for task in tasks
    ]
    return RunHistory(
        method="gs_lora",
        task_type="classification",
        metric="accuracy",
        class_names=NAMES,
        tasks=records,
        info={"config_hash": "abc", "base_weights": "w.safetensors"},
    )


def test_round_trip(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert not run.is_run()
    written = _history()
    assert run.write_history(written) == tmp_path / "run" / "history.json"
    back = run.read_history()
    assert back == written and back.to_dict() == written.to_dict()
    assert back.forgotten_classes == ["dog", "bird"]
    second = back.tasks[1]
    assert second["task"] == {"index": 1, "forget": [2], "retain": [0], "old": [1], "missing": []}
    assert second["classes"] == {
        "forget": ["bird"],
        "retain": ["cat"],
        "old": ["dog"],
        "missing": [],
    }
    assert back.tasks[0]["before"] is None and back.tasks[0]["after"]["bird"] is None
    doc = json.loads(run.history_path.read_text())
    assert doc["format"] == "det_forget.run" and doc["format_version"] == RUN_FORMAT_VERSION
    assert run.is_run() and not run.legacy_layout()
    run.write_config("SEED: 3\n")
    assert run.config_path.read_text() == "SEED: 3\n"
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_history_is_strict_json(tmp_path):
    run = RunDirectory(tmp_path)
    history = _history()
    history.tasks[0]["after"]["cat"] = float("nan")
    with pytest.raises(ValueError):
        run.write_history(history)
    assert not run.history_path.exists()


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.json does not exist"):
        RunDirectory(tmp_path / "nowhere").read_history()


@pytest.mark.parametrize(
    "legacy_file, layout",
    [
        ("forget_report.json", "forget_report.json"),
        ("artifacts/task_0/adapter/adapter_config.json", "artifacts/task_N/adapter"),
    ],
)
def test_legacy_folder_names_the_converter(tmp_path, legacy_file, layout):
    (tmp_path / legacy_file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / legacy_file).write_text("{}")
    run = RunDirectory(tmp_path)
    assert layout in run.legacy_layout()
    with pytest.raises(LegacyRunError, match=f"python tools/convert_run.py {tmp_path}"):
        run.read_history()
    with pytest.raises(LegacyRunError):
        run.adapters()


def test_corrupt_or_foreign_history_names_the_file(tmp_path):
    run = RunDirectory(tmp_path)
    run.history_path.write_text('{"format": "det_forget.run", ')
    with pytest.raises(ValueError, match=f"{run.history_path} is not valid JSON"):
        run.read_history()
    run.history_path.write_text('{"tasks": []}')
    with pytest.raises(ValueError, match="is not a det_forget run history"):
        run.read_history()
    doc = _history().to_dict()
    run.history_path.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        run.read_history()
    del doc["class_names"]
    run.history_path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="lacks the key 'class_names'"):
        run.read_history()


def test_adapters_in_task_order_and_missing_ones_raise(tmp_path):
    run = RunDirectory(tmp_path)
    run.write_history(_history())
    with pytest.raises(FileNotFoundError, match="task 0's adapter"):
        run.adapters()
    for i in (1, 0):
        run.adapter_dir(i).mkdir(parents=True)
        (run.adapter_dir(i) / "adapter_config.json").write_text("{}")
    assert run.adapters() == [tmp_path / "adapters" / "task_00", tmp_path / "adapters" / "task_01"]
    run.write_history(_history(adapters=False))
    assert run.adapters() == []


def test_merged_model(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.merged_model() is None
    with pytest.raises(ValueError, match="suffix"):
        run.merged_model_path(".bin")
    run.merged_model_path(".safetensors").write_bytes(b"")
    assert run.merged_model() == tmp_path / "model_merged.safetensors"
    assert run.merged_config_path == tmp_path / "merged_config.yaml"
