"""Command-line tools and yaml configs: outputs, failures that leave files alone, errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from det_forget.classification.cli import setup_cfg
from det_forget.forgetting import METHODS, RunDirectory

ROOT = Path(__file__).resolve().parents[2]


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"cls_tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _opts(identity_dirs, weights, output_dir, **extra):
    opts = {
        "OUTPUT_DIR": str(output_dir),
        "CLS.DATASET": "image_folder",
        "CLS.DATA_ROOT": str(identity_dirs[0]),
        "CLS.TEST_ROOT": str(identity_dirs[1]),
        "CLS.VAL_PER_CLASS": "8",
        "CLS.VAL_EVAL_PER_CLASS": "8",
        "CLS.WEIGHTS": str(weights),
        "CLS.MODEL.NUM_CLASSES": "5",
        "CLS.MODEL.IMG_SIZE": "16",
        "CLS.MODEL.PATCH_SIZE": "4",
        "CLS.MODEL.EMBED_DIM": "32",
        "CLS.MODEL.DEPTH": "2",
        "CLS.MODEL.NUM_HEADS": "2",
        "CLS.MODEL.PIXEL_MEAN": "[0.5]",
        "CLS.MODEL.PIXEL_STD": "[0.25]",
        "CLS.SOLVER.BATCH_SIZE": "32",
        "FORGET.CLASSES": "['id_2']",
        "FORGET.DATA_RATIO": "1.0",
        "FORGET.MAX_ITER": "40",
        "FORGET.EARLY_STOP.PERIOD": "10",
        "FORGET.LOSS.BOUND": "10.0",
        "FORGET.LOSS.FORGET_WEIGHT": "0.5",
        **extra,
    }
    return [x for kv in opts.items() for x in kv]


def test_forget_tool_writes_metrics_and_artifacts(identity_dirs, tiny_classifier, tmp_path):
    tool = _load_tool("forget_classification")
    out = tmp_path / "run"
    assert tool.main(_opts(identity_dirs, tiny_classifier[0], out)) == 0
    run = RunDirectory(out)
    history = run.read_history()
    (row,) = history.info["summary"]["tasks"]
    assert row["forget"] == ["id_2"] and row["acc_f"] <= 2.0
    assert history.method == "gs_lora" and history.task_type == "classification"
    assert history.metric == "accuracy" and history.forgotten_classes == ["id_2"]
    assert "METHOD: gs_lora" in (out / "config.yaml").read_text()
    assert run.adapters() == [out / "adapters" / "task_00"]
    assert (out / "adapters" / "task_00" / "adapter_model.safetensors").is_file()
    assert run.merged_model() == out / "model_merged.safetensors"


def test_nan_loss_leaves_previous_results_untouched(identity_dirs, tiny_classifier, tmp_path):
    tool = _load_tool("forget_classification")
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.json").write_text('{"previous": true}')
    opts = _opts(identity_dirs, tiny_classifier[0], out, **{"FORGET.LOSS.RETAIN_WEIGHT": "1e999"})
    assert tool.main(opts) == 1
    assert (out / "history.json").read_text() == '{"previous": true}'
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "log.txt"]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"CLS.MODEL.EMBED_DIM": "64"}, "does not fit the requested model: embed_dim"),
        ({"FORGET.CLASSES": "['nobody']"}, "unknown class 'nobody'"),
        ({"FORGET.CLASSES": "[]"}, "empty forget set"),
        (
            {"FORGET.CLASSES": "['id_0', 'id_1', 'id_2', 'id_3', 'id_4']"},
            "forget every class",
        ),
    ],
)
def test_forget_tool_clear_errors(identity_dirs, tiny_classifier, tmp_path, override, message):
    tool = _load_tool("forget_classification")
    with pytest.raises(ValueError, match=message):
        tool.main(_opts(identity_dirs, tiny_classifier[0], tmp_path / "run", **override))
    assert not (tmp_path / "run" / "history.json").exists()


def test_pretrain_tool(identity_dirs, tmp_path):
    tool = _load_tool("pretrain_classifier")
    opts = _opts(identity_dirs, "", tmp_path / "pre")
    opts += ["CLS.PRETRAIN.EPOCHS", "2", "CLS.PRETRAIN.BATCH_SIZE", "32", "CLS.LOG_PERIOD", "5"]
    meta = tool.main(["--output", str(tmp_path / "m.safetensors"), *opts])
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["arch"]["embed_dim"] == 32 and info["arch"]["name"] == "ViTClassifier"
    assert info["metadata"]["test_accuracy"] == meta["test_accuracy"]
    assert 0.0 <= meta["test_accuracy"] <= 100.0 and meta["best_epoch"] in (1, 2)
    assert len(meta["history"]) == 2


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "classification").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_config_loads(path):
    cfg = setup_cfg(str(path))
    assert cfg.FORGET.METHOD in METHODS
    if cfg.CLS.DATASET == "fashion_mnist":
        # Every Fashion-MNIST config matches the shipped checkpoint.
        assert cfg.CLS.MODEL.EMBED_DIM == 96 and cfg.CLS.WEIGHTS.startswith("model_zoo://")
    else:
        assert cfg.CLS.MODEL.NAME == "FaceRecognizer"


def test_forget_tool_reports_face_verification(identity_dirs, tiny_face, tmp_path):
    tool = _load_tool("forget_classification")
    extra = {
        "CLS.MODEL.NAME": "FaceRecognizer",
        "CLS.FACE.SCALE": "16.0",
        "CLS.FACE.MARGIN": "0.35",
        "CLS.FACE.FAR": "[0.01]",
        "FORGET.MAX_ITER": "80",
    }
    assert tool.main(_opts(identity_dirs, tiny_face[0], tmp_path / "face", **extra)) == 0
    report = {"summary": RunDirectory(tmp_path / "face").read_history().info["summary"]}
    verification = report["summary"]["verification"]
    assert verification["before"]["all"]["TAR@FAR=0.01"] >= 90.0
    assert verification["after"]["retained"]["genuine_pairs"] > 0
    assert report["summary"]["tasks"][0]["acc_f"] <= 2.0
