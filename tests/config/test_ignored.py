"""``check_ignored_keys``: a run that sets a key its task type ignores is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch_threads import one_torch_thread

from det_forget.classification.cli import setup_cfg
from det_forget.config import check_ignored_keys
from det_forget.config.ignored import task_type_defaults
from det_forget.engine.inference import build_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RCNN = CONFIGS / "coco_forget.yaml"
DETR = CONFIGS / "detr" / "shapes_detr_tiny_forget.yaml"
GS_LORA = str(CONFIGS / "classification" / "gs_lora.yaml")


@pytest.fixture(autouse=True)
def _restore_threads():
    # setup_cfg applies the yaml files' CLS.NUM_THREADS; keep it from leaking out.
    with one_torch_thread():
        yield


@pytest.mark.parametrize("task_type", ["rcnn", "detr", "classification", "face"])
def test_defaults_pass(task_type):
    cfg = task_type_defaults(task_type)
    if task_type == "detr":
        cfg.MODEL.META_ARCHITECTURE = "DETR"
    if task_type == "face":
        cfg.CLS.MODEL.NAME = "FaceRecognizer"
    check_ignored_keys(cfg)


def test_shipped_configs_pass():
    check_ignored_keys(build_config(RCNN))
    check_ignored_keys(build_config(DETR))
    setup_cfg(GS_LORA)
    setup_cfg(str(CONFIGS / "classification" / "face_casia100.yaml"))


def test_classification_refuses_jitter_copies():
    with pytest.raises(ValueError, match=r"FORGET\.JITTER_COPIES = 2 .*read only by rcnn"):
        setup_cfg(GS_LORA, ["FORGET.JITTER_COPIES", "2"])


def test_classification_refuses_every_detection_key_at_once():
    with pytest.raises(ValueError) as err:
        setup_cfg(GS_LORA, ["FORGET.EVAL_BEFORE", "False", "FORGET.DETECTOR", "DETR"])
    assert "FORGET.EVAL_BEFORE" in str(err.value) and "FORGET.DETECTOR" in str(err.value)


def test_classification_reads_its_own_early_stopping_default():
    # get_classification_cfg's PERIOD is 25, detection's 20: both are defaults, not errors.
    assert setup_cfg(GS_LORA, ["FORGET.EARLY_STOP.PERIOD", "5"]).FORGET.EARLY_STOP.PERIOD == 5


def test_stopping_rule_is_read_by_every_task_type_but_held_out_images_by_detection():
    # One stopping rule for every task type (det_forget/forgetting/stopping.py).
    check_ignored_keys(build_config(RCNN, ["FORGET.EARLY_STOP.PERIOD", 5]))
    assert setup_cfg(GS_LORA, ["FORGET.EARLY_STOP.PATIENCE", "3"]).FORGET.EARLY_STOP.PATIENCE == 3
    # Classification holds out its validation split, not HELDOUT_IMAGES detection images.
    with pytest.raises(ValueError, match=r"FORGET\.EARLY_STOP\.HELDOUT_IMAGES = 4 .*detr, rcnn"):
        setup_cfg(GS_LORA, ["FORGET.EARLY_STOP.HELDOUT_IMAGES", "4"])


def test_detection_refuses_prototype_retain_weight():
    # ForgettingDetector passes no retain features to the prototype term.
    cfg = build_config(RCNN, ["FORGET.METHOD", "gs_lora_pp", "FORGET.PROTOTYPE.RETAIN_WEIGHT", 0.1])
    with pytest.raises(ValueError, match="PROTOTYPE.RETAIN_WEIGHT"):
        check_ignored_keys(cfg)


def test_detr_refuses_rcnn_and_qkv_keys():
    with pytest.raises(ValueError, match="JITTER_COPIES"):
        check_ignored_keys(build_config(DETR, ["FORGET.JITTER_COPIES", 8]))
    with pytest.raises(ValueError, match="NO_RETAIN.L1_WEIGHT"):
        check_ignored_keys(build_config(DETR, ["FORGET.NO_RETAIN.L1_WEIGHT", 0.1]))
    # The R-CNN reads both.
    check_ignored_keys(build_config(RCNN, ["FORGET.JITTER_COPIES", 8]))


def test_face_keys_are_refused_for_a_plain_classifier():
    with pytest.raises(ValueError, match=r"CLS\.FACE\.MARGIN .*read only by face"):
        setup_cfg(GS_LORA, ["CLS.FACE.MARGIN", "0.5"])


def test_detection_refuses_best_val_score_selection():
    # Poppi et al.'s selection needs held-out data of the retained classes, which the
    # detection loop has not: the key is classification's, and detection refuses it.
    cfg = build_config(RCNN)
    cfg.defrost()
    cfg.FORGET.EARLY_STOP.SELECT = "val_score"
    with pytest.raises(ValueError, match=r"FORGET\.EARLY_STOP\.SELECT .*read only by"):
        check_ignored_keys(cfg)
    assert setup_cfg(GS_LORA, ["FORGET.EARLY_STOP.SELECT", "val_score"])


def test_background_weight_is_refused_where_there_is_no_box_head():
    """FORGET.LOSS.BACKGROUND_WEIGHT is read by the R-CNN box head only: DETR's run and a
    classifier refuse it rather than run without it."""
    cfg = build_config(RCNN, ["FORGET.LOSS.BACKGROUND_WEIGHT", "0.5"])
    check_ignored_keys(cfg)
    with pytest.raises(ValueError, match=r"FORGET\.LOSS\.BACKGROUND_WEIGHT = 0\.5 .*rcnn"):
        check_ignored_keys(build_config(DETR, ["FORGET.LOSS.BACKGROUND_WEIGHT", "0.5"]))
    with pytest.raises(ValueError, match=r"FORGET\.LOSS\.BACKGROUND_WEIGHT"):
        setup_cfg(GS_LORA, ["FORGET.LOSS.BACKGROUND_WEIGHT", "0.5"])
