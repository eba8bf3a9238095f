"""audit_classifier / audit_detector on tiny models, and tools/audit.py on tiny runs."""

from __future__ import annotations

import collections
import copy
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch_threads import one_torch_thread

from det_forget.audit import (
    ATTACKS,
    AUDIT_FILE_NAME,
    AuditReport,
    audit_classifier,
    audit_detector,
    load_report,
    membership_verdict,
)
from det_forget.classification import (
    PretrainRecipe,
    ViTClassifier,
    load_image_folder,
    save_classifier,
    train_classifier,
)
from det_forget.forgetting import RunDirectory

ROOT = Path(__file__).resolve().parents[2]
TINY_ARCH = dict(img_size=16, in_chans=1, patch_size=4, embed_dim=32, depth=2, num_heads=2)
NUM_IDS = 4


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_torch_thread():
        yield


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f"audit_tool_{name}", ROOT / "tools" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _identity_folder(root: Path, per_id: int, seed: int) -> Path:
    """``root/id_<k>/<n>.png``: a fixed coarse pattern per identity plus noise."""
    patterns = np.random.default_rng(1234).integers(0, 2, (NUM_IDS, 4, 4)) * 0.8 + 0.1
    patterns[:, 0, 0] = np.linspace(0.1, 0.9, NUM_IDS)  # distinct even if two codes collide
    rng = np.random.default_rng(seed)
    for k in range(NUM_IDS):
        folder = root / f"id_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        big = np.kron(patterns[k], np.ones((4, 4)))
        for n in range(per_id):
            img = big * rng.uniform(0.8, 1.0) + rng.normal(0, 0.15, big.shape)
            arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(arr, mode="L").save(folder / f"{n:03d}.png")
    return root


def _train(data, epochs: int = 15) -> ViTClassifier:
    torch.manual_seed(0)
    model = ViTClassifier(num_classes=NUM_IDS, pixel_mean=(0.5,), pixel_std=(0.25,), **TINY_ARCH)
    recipe = PretrainRecipe(
        epochs=epochs, batch_size=32, base_lr=3e-3, warmup_epochs=1, augment=False
    )
    train_classifier(model, data, None, recipe)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """Identity folders, a trained base checkpoint and a model retrained without ``id_1``."""
    base_dir = tmp_path_factory.mktemp("audit_ids")
    with one_torch_thread():
        train_root = _identity_folder(base_dir / "train", per_id=40, seed=0)
        test_root = _identity_folder(base_dir / "test", per_id=30, seed=1)
        train = load_image_folder(train_root, image_size=16, channels=1)
        test = load_image_folder(test_root, image_size=16, channels=1, classes=train.classes)
        base = _train(train)
        weights = save_classifier(base, base_dir / "base.safetensors")
        retrained = _train(train.of_classes([0, 2, 3]))
    return {
        "train_root": train_root,
        "test_root": test_root,
        "train": train,
        "test": test,
        "base": base,
        "weights": weights,
        "retrained": retrained,
    }


def _surgically_forgotten(model: ViTClassifier, cls: int) -> ViTClassifier:
    """The base model whose head never predicts ``cls`` (a crude forgetting)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.vit.head.bias[cls] -= 50.0
    return out


def _check_report_fields(doc: dict, roles: set[str]) -> None:
    for key in (
        "task",
        "forget_classes",
        "headline_attack",
        "tolerance",
        "reference",
        "reference_auc",
        "forgotten_auc",
        "base_auc",
        "within_tolerance",
        "verdict",
        "models",
        "data",
        "seconds",
        "created",
    ):
        assert key in doc, f"report lacks {key!r}"
    assert set(doc["models"]) == roles
    for role, m in doc["models"].items():
        assert m["role"] == role and m["source"]
        assert set(m["membership"]) == set(ATTACKS)
        for r in m["membership"].values():
            assert 0.0 <= r["auc"] <= 1.0 and r["auc_std_error"] >= 0.0
            assert 0.5 <= r["best_balanced_accuracy"] <= 1.0
            assert r["members"] > 0 and r["nonmembers"] > 0
        assert 0.0 <= m["probe"]["balanced_accuracy"] <= 1.0
        assert m["forget_accuracy"] is not None
    assert isinstance(doc["within_tolerance"], bool)
    assert "within 0.05" in doc["verdict"]
    assert ("NOT within 0.05" in doc["verdict"]) == (not doc["within_tolerance"])


def test_audit_classifier_reports_every_field(tiny_task, tmp_path):
    t = tiny_task
    forgotten = _surgically_forgotten(t["base"], 1)
    report = audit_classifier(
        t["base"],
        forgotten,
        retrained=t["retrained"],
        members=t["train"],
        nonmembers=t["test"],
        forget_classes=[1],
        max_samples=30,
        probe_per_class=30,
        sources={"base": str(t["weights"])},
    )
    assert report.forget_classes == ["id_1"] and report.reference == "retrained"
    assert report.models["forgotten"].forget_accuracy == 0.0
    assert report.models["base"].forget_accuracy > 90.0
    assert report.models["retrained"].forget_accuracy == 0.0
    assert report.data["members_count"] == 30 and report.data["nonmembers_count"] == 30
    # The head-only surgery leaves the features untouched: the probe sees the same thing.
    assert report.models["forgotten"].probe == report.models["base"].probe
    doc = report.to_dict()
    _check_report_fields(doc, {"base", "forgotten", "retrained"})
    assert doc["reference_auc"] == report.auc("retrained")
    path = report.save(tmp_path / "r" / AUDIT_FILE_NAME)
    back = load_report(path.parent)
    assert back.to_dict() == json.loads(path.read_text())
    table = report.format_table()
    assert all(role in table for role in ("base", "forgotten", "retrained"))
    assert "MIA AUC loss" in table and ("PASS" in table or "FAIL" in table)


def test_verdict_says_plainly_whether_within_tolerance():
    ok, text = membership_verdict(0.51, 0.50)
    assert ok and "within 0.05" in text and "NOT" not in text and "0.510" in text
    bad, text = membership_verdict(0.62, 0.50)
    assert not bad and "NOT within 0.05" in text and "difference 0.120" in text
    ok, text = membership_verdict(0.47, None)
    assert ok and "chance" in text
    with pytest.raises(ValueError, match="needs a .base. model"):
        AuditReport(task="classification", forget_classes=[], models={})


def _forget_tool_opts(t, output_dir: Path, *extra: str) -> list[str]:
    opts = {
        "OUTPUT_DIR": str(output_dir),
        "CLS.DATASET": "image_folder",
        "CLS.DATA_ROOT": str(t["train_root"]),
        "CLS.TEST_ROOT": str(t["test_root"]),
        "CLS.VAL_PER_CLASS": "8",
        "CLS.VAL_EVAL_PER_CLASS": "8",
        "CLS.WEIGHTS": str(t["weights"]),
        "CLS.NUM_THREADS": "1",
        "CLS.MODEL.NUM_CLASSES": str(NUM_IDS),
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
        "FORGET.MAX_ITER": "30",
        "FORGET.EARLY_STOP.PERIOD": "10",
        "FORGET.LOSS.BOUND": "10.0",
        "FORGET.LOSS.FORGET_WEIGHT": "0.5",
    }
    return [x for kv in opts.items() for x in kv] + list(extra)


def test_cli_classification_audits_a_run_folder(tiny_task, tmp_path, capsys):
    forget_tool, audit_tool = _load_tool("forget_classification"), _load_tool("audit")
    run = tmp_path / "run"
    opts = _forget_tool_opts(tiny_task, run, "FORGET.SAVE_MERGED", "False")
    assert forget_tool.main(opts) == 0
    history = RunDirectory(run).read_history()
    assert RunDirectory(run).merged_model() is None  # adapters only
    acc_f = history.info["summary"]["tasks"][0]["acc_f"]
    args = ["--task", "classification", "--forgotten", str(run), "--max-samples", "40"]
    args += ["--note", "tiny run"]
    assert audit_tool.main([*args, "--retrained", str(tiny_task["weights"]), *opts]) == 0
    doc = json.loads((run / AUDIT_FILE_NAME).read_text())  # default: next to the run
    _check_report_fields(doc, {"base", "forgotten", "retrained"})
    assert doc["forget_classes"] == ["id_2"]  # read from the run's history.json
    # The adapters were merged onto the base model: the audit sees the run's forgetting.
    assert doc["models"]["forgotten"]["forget_accuracy"] == pytest.approx(acc_f)
    assert doc["command"].startswith("tools/audit.py --task classification")
    assert doc["data"]["note"] == "tiny run"
    out = capsys.readouterr().out
    assert "MIA AUC loss" in out and "wrote" in out


def test_cli_classification_errors_exit_2(tiny_task, tmp_path):
    audit_tool = _load_tool("audit")
    empty = tmp_path / "empty"
    empty.mkdir()
    opts = _forget_tool_opts(tiny_task, tmp_path / "unused")
    args = ["--task", "classification", "--forgotten", str(empty)]
    assert audit_tool.main([*args, *opts]) == 2
    assert not (empty / AUDIT_FILE_NAME).exists()
    file_args = ["--task", "classification", "--forgotten", str(tiny_task["weights"])]
    assert audit_tool.main([*file_args, *opts]) == 2  # a file needs --output


@pytest.fixture(scope="module")
def tiny_detection(tiny_shapes, tmp_path_factory):
    from detection_fixtures import TINY_VAL, save_base_checkpoint, tiny_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = tmp_path_factory.mktemp("audit_det")
    cfg = tiny_cfg(root / "out")
    config_file = root / "tiny.yaml"
    config_file.write_text(cfg.dump())
    base = save_base_checkpoint(cfg, root / "base.pth", seed=0)
    other = save_base_checkpoint(cfg, root / "other.pth", seed=1)
    counts = collections.Counter(
        a["category_id"] for d in DatasetCatalog.get(TINY_VAL) for a in d["annotations"]
    )
    names = MetadataCatalog.get(TINY_VAL).thing_classes
    forget = [names[c] for c, _ in counts.most_common(2)]
    return cfg, config_file, base, other, forget


def test_audit_detector_on_tiny_models(tiny_detection):
    from detection_fixtures import TINY_TRAIN, TINY_VAL
    from detectron2.data import DatasetCatalog

    from det_forget.engine.inference import load_detector

    cfg, _, base, other, forget = tiny_detection
    a, b = load_detector(cfg, base), load_detector(cfg, other)
    ids = [a.class_names.index(n) for n in forget]
    report = audit_detector(
        a.model,
        b.model,
        cfg=a.cfg,
        member_dicts=DatasetCatalog.get(TINY_TRAIN),
        nonmember_dicts=DatasetCatalog.get(TINY_VAL),
        forget_classes=ids,
        class_names=a.class_names,
        max_samples=0,
    )
    doc = report.to_dict()
    _check_report_fields(doc, {"base", "forgotten"})
    assert doc["reference"] == "chance" and doc["reference_auc"] == 0.5
    assert sorted(doc["forget_classes"]) == sorted(forget)
    assert doc["data"]["probe_count"] > doc["data"]["nonmembers_count"] > 0
    # Box features come from the box head (FORGET_OUTPUTS): FC_DIM of the tiny config.
    assert doc["models"]["base"]["probe"]["feature_dim"] == cfg.MODEL.ROI_BOX_HEAD.FC_DIM


def _write_run(run: Path, names: list[str], forget: list[str], adapter: str | None = None):
    """A run folder of one task (history only; the test adds the model files)."""
    from det_forget.forgetting import RunDirectory, RunHistory, build_tasks

    (task,) = build_tasks(range(len(names)), explicit=[[names.index(c) for c in forget]])
    record = RunDirectory.task_record(
        task, names, before=None, after=dict.fromkeys(names, 0.0), summary=None, adapter=adapter
    )
    directory = RunDirectory(run)
    history = RunHistory("gs_lora", "rcnn", "AP", list(names), tasks=[record])
    directory.write_history(history)
    return directory


def test_cli_detection_reads_classes_from_the_run(tiny_detection, tmp_path):
    from detection_fixtures import TINY_VAL
    from detectron2.data import MetadataCatalog

    audit_tool = _load_tool("audit")
    _, config_file, base, other, forget = tiny_detection
    run = tmp_path / "det_run"
    _write_run(run, list(MetadataCatalog.get(TINY_VAL).thing_classes), forget)
    shutil.copy(other, run / "model_merged.pth")
    args = ["--task", "detection", "--config-file", str(config_file), "--base", base]
    out = tmp_path / "report.json"
    rc = audit_tool.main([*args, "--forgotten", str(run), "--output", str(out), "--seed", "1"])
    assert rc == 0
    doc = json.loads(out.read_text())
    _check_report_fields(doc, {"base", "forgotten"})
    assert doc["task"] == "detection" and sorted(doc["forget_classes"]) == sorted(forget)
    assert doc["models"]["forgotten"]["source"] == str(run)


def test_run_folders_are_read_through_the_run_directory(tmp_path):
    from det_forget.forgetting import LegacyRunError

    audit_tool = _load_tool("audit")
    names = ["a", "b", "c"]
    run = _write_run(tmp_path / "run", names, ["c", "a"], adapter="adapters/task_00")
    with pytest.raises(FileNotFoundError, match="task 0's adapter"):
        audit_tool.model_files(str(run.path))  # recorded adapter missing, no merged model
    run.adapter_dir(0).mkdir(parents=True)
    (run.adapter_dir(0) / "adapter_config.json").write_text("{}")
    assert audit_tool.model_files(str(run.path)) == (None, [run.adapter_dir(0)])
    merged = run.merged_model_path(".safetensors")
    merged.write_bytes(b"")
    assert audit_tool.model_files(str(run.path)) == (merged, [])  # the merged model wins
    assert audit_tool.model_files(str(merged)) == (merged, [])
    assert audit_tool.forgotten_classes(str(run.path), names) == [0, 2]
    assert audit_tool.forgotten_classes(str(merged), names) is None

    legacy = tmp_path / "legacy"
    (legacy / "artifacts" / "task_0" / "adapter").mkdir(parents=True)
    (legacy / "metrics.json").write_text("{}")
    with pytest.raises(LegacyRunError, match="tools/convert_run.py"):
        audit_tool.model_files(str(legacy))


def test_verdict_warns_when_too_few_samples(tiny_task):
    t = tiny_task
    report = audit_classifier(
        t["base"],
        _surgically_forgotten(t["base"], 1),
        members=t["train"],
        nonmembers=t["test"],
        forget_classes=[1],
        max_samples=10,
        probe_per_class=10,
    )
    assert report.reference == "chance" and "chance" in report.verdict
    assert "standard error" in report.verdict and "audit more samples" in report.verdict


def test_audit_classifier_with_references_and_relearn(membership_testbed, tmp_path):
    """On the testbed, forgetting that only pushes the classes' logits down passes for the
    outputs (accuracy 0) but not for the calibrated attack or relearn time."""
    t = membership_testbed
    forget = t["forget"]
    shifted = copy.deepcopy(t["base"])
    with torch.no_grad():
        shifted.vit.head.bias[forget] -= 30.0
    with one_torch_thread():
        report = audit_classifier(
            t["base"],
            shifted,
            retrained=t["retrained"],
            members=t["testbed"].train,
            nonmembers=t["testbed"].heldout,
            forget_classes=forget,
            max_samples=0,
            probe_per_class=0,
            references=t["references"],
            relearn={"shots": 5, "steps": 40, "lr": 1e-2, "batch_size": 8},
        )
    models = report.models
    assert report.headline_attack == "calibrated"
    calibrated = {r: m.membership["calibrated"] for r, m in models.items()}
    assert calibrated["base"].attack == "LiRA offline, 4 references"
    assert calibrated["base"].auc >= 0.60 and report.auc("base") == calibrated["base"].auc
    assert models["forgotten"].forget_accuracy == 0.0
    # The memorised images still stand out after the shift; the retrained model's do not.
    assert abs(calibrated["forgotten"].auc - calibrated["base"].auc) < 0.05
    assert abs(calibrated["retrained"].auc - 0.5) < 3 * calibrated["retrained"].auc_std_error
    assert not report.within_tolerance and "NOT within 0.05" in report.verdict
    relearn = {r: m.relearn for r, m in models.items()}
    assert relearn["base"].steps == 0
    assert relearn["forgotten"].start_accuracy == 0.0 and relearn["forgotten"].steps != 0
    assert relearn["base"].target_accuracy == relearn["retrained"].target_accuracy
    assert "Relearn time" in report.verdict and report.data["relearn"]["shots"] == 5
    table = report.format_table()
    assert "MIA AUC calibrated" in table and "relearn steps" in table
    assert "0 steps (never lost it)" in table
    assert "relearn steps: fine-tuning steps" in table  # the legend says what it means
    doc = report.to_dict()
    assert doc["glossary"]["MIA AUC calibrated"].startswith("the same with each image")
    back = load_report(report.save(tmp_path / AUDIT_FILE_NAME))
    assert back.to_dict()["models"] == doc["models"] and back.verdict == report.verdict


def test_cli_classification_calibrated_and_relearn(tiny_task, tmp_path, capsys):
    audit_tool = _load_tool("audit")
    opts = _forget_tool_opts(tiny_task, tmp_path / "unused")
    out = tmp_path / "report.json"
    args = ["--task", "classification", "--forgotten", str(tiny_task["weights"])]
    args += ["--retrained", str(tiny_task["weights"]), "--output", str(out)]
    args += ["--forget-classes", "id_2", "--max-samples", "20", "--probe-per-class", "10"]
    args += ["--references", "2", "--reference-epochs", "2"]
    args += ["--relearn-shots", "2", "--relearn-steps", "3", "--relearn-batch-size", "4"]
    assert audit_tool.main([*args, *opts]) == 0
    doc = json.loads(out.read_text())
    assert (
        doc["headline_attack"] == "calibrated" and "2 reference models" in doc["data"]["references"]
    )
    for role in ("base", "forgotten", "retrained"):
        m = doc["models"][role]
        assert m["membership"]["calibrated"]["attack"] == "LiRA offline, 2 references"
        assert m["relearn"]["steps"] == 0 and m["relearn"]["budget_steps"] == 3
    # The same weights in every role: the same calibrated AUC, so the check passes.
    assert doc["within_tolerance"] and doc["forgotten_auc"] == doc["reference_auc"]
    bad = audit_tool.main([*args, "--calibration", "online", *opts])
    assert bad == 2  # 2 references give each image one IN and one OUT: no online
    assert "needs --references 4 or more" in capsys.readouterr().err
    detection = ["--task", "detection", "--forgotten", str(tmp_path), "--references", "2"]
    assert audit_tool.main(detection) == 2
