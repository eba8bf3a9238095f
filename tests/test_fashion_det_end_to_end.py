"""configs/fashion_det_forget.yaml end to end on a tiny fashion_det: generate, register,
forget Shirt + Sneaker, evaluate with object fate (report, history, results keys)."""

from __future__ import annotations

import json

import pytest
from detection_fixtures import save_base_checkpoint, tiny_cfg
from detectron2.data import DatasetCatalog

from det_forget.data import FASHION_DET_DEFAULT_FORGET, register_fashion_det_dataset
from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.evaluation.object_fate import FATES

TRAIN, VAL = "tiny_fashion_det_train", "tiny_fashion_det_val"


@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    register_fashion_det_dataset(
        tmp_path_factory.mktemp("tiny_fashion"),
        (TRAIN, VAL),
        num_train=40,
        num_val=12,
        image_size=64,
        min_size=12,
        max_size=32,
        min_objects=3,
        max_objects=4,
    )


def test_forget_config_runs_and_reports_object_fate(tiny_fashion, tmp_path):
    cfg = tiny_cfg(
        tmp_path / "run",
        "fashion_det_forget.yaml",
        **{
            "DATASETS.TRAIN": (TRAIN,),
            "DATASETS.TEST": (VAL,),
            "FORGET.EARLY_STOP.PERIOD": 0,
            "FORGET.FATE_SCORE_THRESH": 0.0,  # a random detector: count every detection
        },
    )
    assert list(cfg.FORGET.CLASSES) == list(FASHION_DET_DEFAULT_FORGET)
    cfg.merge_from_list(["MODEL.WEIGHTS", save_base_checkpoint(cfg, tmp_path / "base.pth")])
    finalize_forget_config(cfg)
    cfg.freeze()
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    (record,) = trainer.train()
    assert record["classes"]["forget"] == ["Shirt", "Sneaker"]
    # The config trains forget boxes towards background too (FORGET.LOSS.BACKGROUND_WEIGHT).
    assert cfg.FORGET.LOSS.BACKGROUND_WEIGHT > 0
    assert "loss_forget_background" in trainer.storage.histories()

    val = DatasetCatalog.get(VAL)
    forget_ids = {6, 7}  # Shirt, Sneaker
    n_objects = sum(a["category_id"] in forget_ids for d in val for a in d["annotations"])
    assert n_objects > 0

    report_path = tmp_path / "run" / "inference" / "task_00" / "forget_report.json"
    fate = json.loads(report_path.read_text())["object_fate"]
    assert fate["score_thresh"] == 0.0
    assert set(fate["per_class"]) == {"Shirt", "Sneaker"}
    assert fate["total"]["objects"] == n_objects
    assert sum(fate["total"][f] for f in FATES) == n_objects
    for name, counts in fate["per_class"].items():
        assert counts["objects"] == sum(
            a["category_id"] == (6 if name == "Shirt" else 7) for d in val for a in d["annotations"]
        )
        assert sum(counts["relabelled_as"].values()) == counts["relabelled"]
        assert name not in counts["relabelled_as"]
    results = record["details"]["results"]  # the evaluator's flat "forget" results
    assert results["fate_objects"] == n_objects
    assert results["relabelled_pct"] == pytest.approx(
        100.0 * fate["total"]["relabelled"] / n_objects
    )


def test_shipped_fashion_weights_and_cards():
    import os

    from detection_fixtures import REPO

    from det_forget.engine.inference import build_config

    for config in ("fashion_det_forget.yaml", "base/fashion_vit_tiny_frcnn_retrain.yaml"):
        cfg = build_config(os.path.join(REPO, "configs", config))
        assert cfg.DATASETS.TEST == ("fashion_det_val",)
    cfg = build_config(os.path.join(REPO, "configs", "fashion_det_forget.yaml"))
    assert os.path.isfile(os.path.join(REPO, cfg.MODEL.WEIGHTS))
    for name in ("fashion_vit_tiny_frcnn", "fashion_vit_tiny_frcnn_retrain"):
        card = json.loads(
            open(os.path.join(REPO, "det_forget", "model_zoo", name + ".json")).read()
        )
        assert card["file"] == name + ".pth" and card["ap_curve"] and card["command"]
