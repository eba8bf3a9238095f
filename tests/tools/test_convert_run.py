"""tools/convert_run.py on small legacy run folders built here (tiny adapters)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from det_forget.engine.inference import read_forget_history
from det_forget.evaluation.metrics import forgetting_summary
from det_forget.forgetting import LegacyRunError, RunDirectory, build_tasks
from det_forget.lora import (
    LoraConfig,
    inject_lora,
    load_adapter_sequence,
    lora_layers,
    merge_and_reset_adapters,
    save_adapter,
    unload_adapters,
)

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["red", "green", "blue", "cyan"]
LORA = LoraConfig(rank=2, target_modules=["fc1", "fc2"])


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "convert_run_tool", ROOT / "tools" / "convert_run.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, len(NAMES))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _train_two_tasks(save_dir) -> tuple[nn.Module, list]:
    """A two-task continual "run" on :class:`Tiny`; ``save_dir(index)`` -> adapter folder."""
    tasks = build_tasks(range(len(NAMES)), explicit=[[0], [1]])
    model = Tiny()
    inject_lora(model, LORA)
    for task in tasks:
        if task.index:
            merge_and_reset_adapters(model)
        gen = torch.Generator().manual_seed(task.index + 1)
        with torch.no_grad():
            for _, layer in lora_layers(model):
                for p in layer.lora_B.values():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        save_dir(model, task)
    return model.eval(), tasks


def _scores(task_index: int, ap50: bool):
    after = {n: (1.0 if i <= task_index else 50.0 + i) for i, n in enumerate(NAMES)}
    return {n: {"AP": v, "AP50": v + 10 if ap50 else None} for n, v in after.items()}


def _legacy_detection(run: Path) -> nn.Module:
    records = []

    def save(model, task):
        names = {g: [NAMES[c] for c in v] for g, v in task.groups().as_dict().items()}
        before = _scores(task.index - 1, True)
        after = _scores(task.index, True)
        meta = {
            "task": task.index,
            "classes": names,
            "data_used": {"forget_images": 3},
            "metrics_before": before,
            "metrics_after": after,
            "config_hash": "0123abcd",
            "method": "gs_lora",
            "base_weights": "base.pth",
        }
        path = run / "adapters" / f"task_{task.index:02d}"
        save_adapter(model, path, LORA, metadata=meta)
        records.append(
            {
                "task": task.to_dict(),
                "classes": names,
                "iterations": [task.index * 5, task.index * 5 + 5],
                "before": before,
                "after": after,
                "results": {"AP": 40.0},
                "summary": {"h_mean": 42.0},
                "adapter": f"/elsewhere/{path.name}",  # written relative to another cwd
            }
        )

    model, _ = _train_two_tasks(save)
    report = {"config_hash": "0123abcd", "method": "gs_lora", "classes": NAMES, "tasks": records}
    (run / "forget_report.json").write_text(json.dumps(report))
    (run / "config.yaml").write_text(
        "MODEL:\n  META_ARCHITECTURE: ForgettingDetector\n  WEIGHTS: base.pth\n"
        "FORGET:\n  DETECTOR: DETR\n  METHOD: gs_lora\n"
    )
    (run / "metrics.json").write_text('{"iteration": 4, "loss": 1.0}\n')  # detectron2's events
    torch.save({"model": {}}, run / "model_merged.pth")
    return model


def _legacy_classification(run: Path) -> nn.Module:
    records = []

    def save(model, task):
        before = {str(i): v["AP"] for i, v in enumerate(_scores(task.index - 1, False).values())}
        after = {str(i): v["AP"] for i, v in enumerate(_scores(task.index, False).values())}
        ids = lambda d: {int(k): v for k, v in d.items()}  # noqa: E731
        summary = forgetting_summary(ids(before), ids(after), task.groups())
        path = run / "artifacts" / f"task_{task.index}" / "adapter"
        meta = {"task": task.to_dict(), "class_names": NAMES, "summary": summary}
        save_adapter(model, path, LORA, metadata=meta)
        records.append(
            {
                "task": task.to_dict(),
                "before": before,
                "after": after,
                "summary": summary,
                "train": {"steps": 3},
            }
        )

    model, _ = _train_two_tasks(save)
    merged = unload_adapters(copy.deepcopy(model), merge=True)
    save_file(dict(merged.state_dict()), str(run / "artifacts" / "model_final.safetensors"))
    doc = {
        "summary": {"method": "gs_lora", "tasks": [{"task": 0}, {"task": 1}]},
        "result": {
            "method": "gs_lora",
            "params": {"trainable_share": 5.0},
            "class_names": NAMES,
            "tasks": records,
            "seconds": 1.5,
        },
        "config": {
            "CLS": {"WEIGHTS": "tiny.safetensors", "MODEL": {"NAME": "ViTClassifier"}},
            "FORGET": {"METHOD": "gs_lora", "CLASSES": ["red"]},
        },
    }
    (run / "metrics.json").write_text(json.dumps(doc))
    return model


def _reloaded_output(run: RunDirectory) -> torch.Tensor:
    model = Tiny()
    load_adapter_sequence(model, run.adapters())
    return model.eval()(torch.ones(2, 4))


def test_detection_run_is_converted_in_place(tmp_path):
    tool = _load_tool()
    source = _legacy_detection(tmp_path)
    with pytest.raises(LegacyRunError, match="tools/convert_run.py"):
        read_forget_history(tmp_path)
    assert tool.main([str(tmp_path)]) == 0

    run = RunDirectory(tmp_path)
    history = run.read_history()
    assert (history.method, history.task_type, history.metric) == ("gs_lora", "detr", "AP")
    assert history.class_names == NAMES and history.forgotten_classes == ["red", "green"]
    assert history.info["config_hash"] == "0123abcd" and history.info["base_weights"] == "base.pth"
    first, second = history.tasks
    assert first["classes"]["forget"] == ["red"] and second["classes"]["old"] == ["red"]
    assert first["after"] == {"red": 1.0, "green": 51.0, "blue": 52.0, "cyan": 53.0}
    assert first["details"]["AP50_after"]["green"] == 61.0
    assert first["details"]["data_used"] == {"forget_images": 3}
    assert second["train"] == {"iterations": [5, 10]} and second["summary"] == {"h_mean": 42.0}
    assert [r["adapter"] for r in history.tasks] == ["adapters/task_00", "adapters/task_01"]
    assert run.adapters() == [run.adapter_dir(0), run.adapter_dir(1)]
    torch.testing.assert_close(_reloaded_output(run), source(torch.ones(2, 4)))
    assert run.merged_model() == tmp_path / "model_merged.pth"

    (manifest,) = read_forget_history(run.adapter_dir(1))  # the one manifest schema
    assert manifest.task == 1 and manifest.classes["forget"] == ["green"]
    assert manifest.after == second["after"]
    assert not (tmp_path / "forget_report.json").exists()
    assert (tmp_path / "metrics.json").read_text().startswith('{"iteration"')  # kept
    with pytest.raises(ValueError, match="already converted"):
        tool.convert_run(tmp_path)
    assert tool.main([str(tmp_path)]) == 2


def test_classification_run_is_converted_in_place(tmp_path):
    tool = _load_tool()
    source = _legacy_classification(tmp_path)
    merged_bytes = (tmp_path / "artifacts" / "model_final.safetensors").read_bytes()
    history = tool.convert_run(tmp_path)

    run = RunDirectory(tmp_path)
    assert run.read_history().to_dict() == history.to_dict()
    assert (history.method, history.task_type, history.metric) == (
        "gs_lora",
        "classification",
        "accuracy",
    )
    assert history.forgotten_classes == ["red", "green"]
    first, second = history.tasks
    assert first["before"] == {"red": 50.0, "green": 51.0, "blue": 52.0, "cyan": 53.0}
    assert second["after"]["green"] == 1.0 and second["train"] == {"steps": 3}
    assert second["summary"]["after"]["forget"] == 1.0
    assert history.info["summary"]["tasks"] == [{"task": 0}, {"task": 1}]
    assert history.info["base_weights"] == "tiny.safetensors"
    assert run.adapters() == [run.adapter_dir(0), run.adapter_dir(1)]
    torch.testing.assert_close(_reloaded_output(run), source(torch.ones(2, 4)))
    assert run.merged_model().read_bytes() == merged_bytes
    assert "METHOD: gs_lora" in run.config_path.read_text()
    (manifest,) = read_forget_history(run.adapter_dir(0))
    assert manifest.metric == "accuracy" and manifest.before == first["before"]
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "metrics.json").exists()


def test_failed_conversion_leaves_the_legacy_run(tmp_path, monkeypatch):
    tool = _load_tool()
    _legacy_classification(tmp_path)

    def disk_full(self, history):
        raise OSError("disk full")

    monkeypatch.setattr(RunDirectory, "write_history", disk_full)
    with pytest.raises(OSError, match="disk full"):
        tool.convert_run(tmp_path)
    assert (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "artifacts" / "task_1" / "adapter" / "adapter_config.json").is_file()
    assert RunDirectory(tmp_path).legacy_layout() and not RunDirectory(tmp_path).is_run()
    monkeypatch.undo()
    tool.convert_run(tmp_path, keep_legacy=True)  # a retry succeeds; the old files stay
    assert RunDirectory(tmp_path).is_run() and (tmp_path / "metrics.json").is_file()


def test_not_a_run(tmp_path):
    tool = _load_tool()
    with pytest.raises(FileNotFoundError, match="no run of an earlier det_forget"):
        tool.convert_run(tmp_path)
    (tmp_path / "forget_report.json").write_text("{")
    with pytest.raises(ValueError, match="forget_report.json is not valid JSON"):
        tool.convert_run(tmp_path)
