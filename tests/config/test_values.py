"""check_values: values no run can use are refused up front, naming key, value and range."""

import pytest
from detection_fixtures import REPO

from det_forget.classification.config import get_classification_cfg
from det_forget.config import check_values
from det_forget.engine.inference import build_config
from det_forget.errors import ConfigValueError

BAD = [
    ("SOLVER.IMS_PER_BATCH", 0, "at least 1"),
    ("SOLVER.BASE_LR", float("nan"), "positive finite"),
    ("SOLVER.BASE_LR", -0.1, "positive finite"),
    ("FORGET.MAX_ITER", 0, "at least 1"),
    ("FORGET.DATA_RATIO", 1.5, "in (0, 1]"),
    ("FORGET.LORA.RANK", 0, "at least 1"),
    ("FORGET.LORA.DROPOUT", 1.0, "in [0, 1)"),
    ("DATALOADER.NUM_WORKERS", -1, "0 or more"),
]


def _detection_cfg():
    return build_config(f"{REPO}/configs/coco_forget.yaml", ["MODEL.DEVICE", "cpu"])


def test_shipped_defaults_pass():
    check_values(_detection_cfg())
    check_values(get_classification_cfg())


@pytest.mark.parametrize("key, value, allowed", BAD)
def test_bad_value_is_named(key, value, allowed):
    cfg = _detection_cfg()
    cfg.defrost()
    cfg.merge_from_list([key, value])
    with pytest.raises(ConfigValueError) as info:
        check_values(cfg)
    message = str(info.value)
    assert message.startswith(f"{key} ") and allowed in message


def test_classification_config_is_checked_too():
    cfg = get_classification_cfg()
    cfg.FORGET.MAX_ITER = 0
    with pytest.raises(ConfigValueError, match="FORGET.MAX_ITER 0"):
        check_values(cfg)
