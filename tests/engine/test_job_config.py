"""The config of an app's forgetting job (``engine/job_config.py``), without Qt or a model."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from det_forget.config import lora_config_from_cfg
from det_forget.data import SHAPES_CLASS_NAMES
from det_forget.engine.inference import build_config, detector_config
from det_forget.engine.job_config import build_job_config, job_output_dir
from det_forget.forgetting.methods import MethodNotSupportedError, get_method, methods_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CONFIG = os.path.join(REPO, "configs", "coco_forget.yaml")
DETR_CONFIG = os.path.join(REPO, "configs", "detr", "shapes_detr_tiny_forget.yaml")


@pytest.fixture(scope="module")
def demo_cfg():
    return build_config(DEMO_CONFIG)


def _job(cfg, tmp_path, **overrides):
    kwargs = {
        "classes": ["blue_triangle"],
        "method": "gs_lora",
        "max_iter": 7,
        "data_ratio": 0.25,
        "output_dir": str(tmp_path / "job"),
        "class_names": SHAPES_CLASS_NAMES,
    }
    return build_job_config(cfg, **{**kwargs, **overrides})


def test_job_config_carries_the_settings_and_leaves_the_base_alone(demo_cfg, tmp_path):
    before = demo_cfg.dump()
    cfg = _job(
        demo_cfg,
        tmp_path,
        classes=["cyan_ring", "blue_triangle", "cyan_ring"],
        method="neg_grad",
        weights="/models/start.pth",
        base_lr=0.004,
        extra_opts=["DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"],
    )
    assert demo_cfg.dump() == before  # cloned, never changed
    assert cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector"
    assert cfg.FORGET.DETECTOR == "GeneralizedRCNN"
    assert list(cfg.FORGET.CLASSES) == ["cyan_ring", "blue_triangle"]  # repeats dropped
    assert list(cfg.FORGET.TASKS) == [] and list(cfg.FORGET.TASK_SIZES) == []
    assert (cfg.FORGET.METHOD, cfg.FORGET.MAX_ITER, cfg.FORGET.DATA_RATIO) == ("neg_grad", 7, 0.25)
    assert cfg.SOLVER.BASE_LR == 0.004 and cfg.MODEL.WEIGHTS == "/models/start.pth"
    assert cfg.OUTPUT_DIR == str(tmp_path / "job")
    assert cfg.DATALOADER.NUM_WORKERS == 0 and cfg.SOLVER.IMS_PER_BATCH == 2
    # Without weights / learning rate the config's own are kept.
    cfg = _job(demo_cfg, tmp_path)
    assert cfg.MODEL.WEIGHTS == demo_cfg.MODEL.WEIGHTS
    assert cfg.SOLVER.BASE_LR == demo_cfg.SOLVER.BASE_LR


def test_plain_detector_config_is_wrapped_for_forgetting(demo_cfg, tmp_path):
    plain = detector_config(demo_cfg)  # e.g. a run's merged_config.yaml
    assert plain.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    cfg = _job(plain, tmp_path)
    assert cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector"
    assert cfg.FORGET.DETECTOR == "GeneralizedRCNN"


def test_class_names_default_to_the_config_datasets(demo_cfg, tmp_path):
    cfg = _job(demo_cfg, tmp_path, class_names=None, classes=["white_bar"])
    assert list(cfg.FORGET.CLASSES) == ["white_bar"]
    # Names resolve as in every run (exact, then case-insensitive when unambiguous).
    _job(demo_cfg, tmp_path, class_names=None, classes=["White_Bar"])
    with pytest.raises(ValueError, match="'Whte_bar'"):
        _job(demo_cfg, tmp_path, class_names=None, classes=["Whte_bar"])


@pytest.mark.parametrize(
    "classes, message",
    [
        (["blue_triangle", "purple_elephant"], "unknown class 'purple_elephant'"),
        ([], "empty forget set"),
        (list(SHAPES_CLASS_NAMES), "would forget every class"),
    ],
    ids=["unknown", "empty", "all"],
)
def test_bad_forget_sets_are_refused(demo_cfg, tmp_path, classes, message):
    with pytest.raises(ValueError, match=message) as info:
        _job(demo_cfg, tmp_path, classes=classes)
    if "unknown" in message:
        assert "red_circle" in str(info.value)  # lists the valid classes


def test_a_task_sequence_from_extra_options_is_checked(demo_cfg, tmp_path):
    cfg = _job(demo_cfg, tmp_path, extra_opts=["FORGET.TASKS", "[['red_circle'], ['white_bar']]"])
    assert [list(t) for t in cfg.FORGET.TASKS] == [["red_circle"], ["white_bar"]]
    with pytest.raises(ValueError, match="unknown class 'ghost'"):
        _job(demo_cfg, tmp_path, extra_opts=["FORGET.TASKS", "[['red_circle'], ['ghost']]"])
    half = list(SHAPES_CLASS_NAMES[:5]), list(SHAPES_CLASS_NAMES[5:])
    with pytest.raises(ValueError, match="every class"):
        _job(demo_cfg, tmp_path, extra_opts=["FORGET.TASKS", repr([*half])])
    with pytest.raises(ValueError, match="FORGET.TASK_SIZES"):
        _job(demo_cfg, tmp_path, extra_opts=["FORGET.TASK_SIZES", "[2, 2]"])


def test_methods_are_checked_against_the_task_type(demo_cfg, tmp_path):
    with pytest.raises(MethodNotSupportedError, match="retrain") as info:
        _job(demo_cfg, tmp_path, method="retrain")
    assert "gs_lora" in str(info.value)  # the methods R-CNN runs
    with pytest.raises(ValueError, match="unknown FORGET.METHOD 'gslora'"):
        _job(demo_cfg, tmp_path, method="gslora")
    # A method moved in by an extra option is checked the same.
    with pytest.raises(MethodNotSupportedError):
        _job(demo_cfg, tmp_path, extra_opts=["FORGET.METHOD", "retrain"])
    detr = build_config(DETR_CONFIG)
    for name in ("no_retain", "retrain"):
        with pytest.raises(MethodNotSupportedError, match="detr"):
            _job(detr, tmp_path, method=name)
    assert _job(detr, tmp_path, method="gs_lora_pp").FORGET.DETECTOR == "DETR"


@pytest.mark.parametrize("method", [m.name for m in methods_for("rcnn")])
def test_adapters_go_where_the_registry_says(demo_cfg, tmp_path, method):
    cfg = _job(demo_cfg, tmp_path, method=method)
    assert cfg.FORGET.LORA.dump() == demo_cfg.FORGET.LORA.dump()  # the job sets no layers
    spec = get_method(method)
    if not spec.uses_lora:
        with pytest.raises(ValueError, match="full weights"):
            lora_config_from_cfg(cfg)
        return
    lora = lora_config_from_cfg(cfg)
    if spec.adapters == "ffn":
        assert lora.target_modules and not lora.qkv_modules
    else:
        assert lora.qkv_modules == ["attn.qkv"] and not lora.target_modules


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"max_iter": 0}, "FORGET.MAX_ITER must be a positive"),
        ({"data_ratio": 1.5}, r"FORGET.DATA_RATIO must be in \(0, 1\]"),
        ({"extra_opts": ["SOLVER.IMS_PER_BATCH"]}, "KEY VALUE pairs"),
        ({"extra_opts": ["SOLVER.NO_SUCH_KEY", "1"]}, "SOLVER.NO_SUCH_KEY"),
        ({"extra_opts": ["FORGET.MAX_ITER", "'many'"]}, "invalid option"),
        ({"extra_opts": ["FORGET.SPARSITY.ZERO_REL_THRESHOLD", "0.5"]}, "rcnn models ignore"),
    ],
    ids=["max-iter", "data-ratio", "odd-options", "unknown-key", "bad-type", "ignored-key"],
)
def test_bad_settings_are_refused(demo_cfg, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _job(demo_cfg, tmp_path, **overrides)


def test_job_output_dir_is_new_and_readable(tmp_path):
    now = dt.datetime(2024, 5, 6, 7, 8, 9)
    path = job_output_dir(tmp_path, ["blue_triangle", "cyan ring/x"], now=now)
    assert path == str(tmp_path / "forget_20240506-070809_blue_triangle_cyan-ring-x")
    assert not os.path.exists(path)  # named, not created
    os.makedirs(path)
    assert job_output_dir(tmp_path, ["blue_triangle", "cyan ring/x"], now=now) == path + "_1"
    long = job_output_dir(tmp_path, ["c" * 100], now=now)
    assert os.path.basename(long) == "forget_20240506-070809_" + "c" * 40
