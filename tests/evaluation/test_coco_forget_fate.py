"""Object fate through ForgetCOCOEvaluator: hand-made detections, report, log table, results."""

from __future__ import annotations

import json
import logging
import math
import uuid

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.structures import Boxes, Instances

from det_forget.evaluation import ClassGroups
from det_forget.evaluation.coco_forget import ForgetCOCOEvaluator

# Non-contiguous COCO ids: the evaluator must count fates on contiguous ids (COCOEvaluator
# rewrites them in place to dataset ids while it evaluates).
CATEGORIES = [
    {"id": 2, "name": "cat"},
    {"id": 4, "name": "dog"},
    {"id": 7, "name": "bird"},
    {"id": 8, "name": "fox"},
]
NAMES = [c["name"] for c in CATEGORIES]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}
GT = {  # image id -> [(class, xywh)]
    1: [("cat", [5, 5, 20, 20]), ("dog", [35, 35, 20, 20])],
    2: [("dog", [5, 30, 25, 20]), ("bird", [30, 30, 20, 25])],
    3: [("dog", [10, 10, 30, 30])],
    4: [("cat", [20, 20, 30, 30]), ("fox", [0, 0, 12, 12])],
    5: [("fox", [30, 30, 30, 30])],
}
# dog@1 detected as dog; dog@2 re-labelled as cat (bird next to it is detected correctly);
# dog@3 only found at score 0.3 (gone at 0.5); fox@4 re-labelled as dog; fox@5 gone.
PREDICTIONS = [  # (image id, class, xywh, score)
    (1, "cat", [5, 5, 20, 20], 0.9),
    (1, "dog", [35, 35, 20, 20], 0.9),
    (2, "cat", [6, 31, 24, 19], 0.8),
    (2, "bird", [30, 30, 20, 25], 0.9),
    (3, "dog", [10, 10, 30, 30], 0.3),
    (4, "cat", [20, 20, 30, 30], 0.9),
    (4, "dog", [0, 0, 12, 12], 0.7),
]


@pytest.fixture(scope="module")
def gt_json(tmp_path_factory) -> str:
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in GT]
    anns = []
    for image_id, objects in GT.items():
        for name, box in objects:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": CAT_ID[name],
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
    path = tmp_path_factory.mktemp("fate") / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return str(path)


@pytest.fixture
def dataset(gt_json):
    name = f"test_fate_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, gt_json, "/nonexistent_images")
    yield name
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


def _run(evaluator: ForgetCOCOEvaluator, predictions=PREDICTIONS, img_ids=None) -> dict:
    evaluator.reset()
    for image_id in GT:
        mine = [p for p in predictions if p[0] == image_id]
        inst = Instances((64, 64))
        xyxy = [[x, y, x + w, y + h] for _, _, (x, y, w, h), _ in mine]
        inst.pred_boxes = Boxes(torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.tensor([p[3] for p in mine], dtype=torch.float32)
        inst.pred_classes = torch.tensor([NAMES.index(p[1]) for p in mine], dtype=torch.int64)
        evaluator.process(
            [{"image_id": image_id, "height": 64, "width": 64}], [{"instances": inst}]
        )
    return evaluator.evaluate(img_ids)


GROUPS = ClassGroups(forget=("dog", "fox"), retain=("cat", "bird"))


def test_fates_in_results_report_and_log(dataset, tmp_path, caplog):
    evaluator = ForgetCOCOEvaluator(dataset, GROUPS, output_dir=str(tmp_path))
    with caplog.at_level(logging.INFO):
        results = _run(evaluator)
    forget = results["forget"]
    assert forget["fate_objects"] == 5.0
    assert forget["detected_pct"] == pytest.approx(20.0)
    assert forget["relabelled_pct"] == pytest.approx(40.0)
    assert forget["gone_pct"] == pytest.approx(40.0)
    flat = flatten_results_dict(results)
    assert flat["forget/relabelled_pct"] == pytest.approx(40.0)
    assert all(isinstance(v, float) for v in flat.values())

    fates = {(f.image_id, f.gt_class): f for f in evaluator.last_fates}
    assert fates[(1, "dog")].fate == "detected" and fates[(1, "dog")].label == "dog"
    assert fates[(2, "dog")].fate == "relabelled" and fates[(2, "dog")].label == "cat"
    assert fates[(3, "dog")].fate == "gone"
    assert fates[(4, "fox")].fate == "relabelled" and fates[(4, "fox")].label == "dog"
    assert fates[(5, "fox")].fate == "gone"

    report = json.loads((tmp_path / "forget_report.json").read_text())
    fate = report["object_fate"]
    assert fate["score_thresh"] == 0.5 and fate["iou_thresh"] == 0.5
    assert list(fate["per_class"]) == ["dog", "fox"]
    dog = fate["per_class"]["dog"]
    assert (dog["objects"], dog["detected"], dog["relabelled"], dog["gone"]) == (3, 1, 1, 1)
    assert dog["relabelled_as"] == {"cat": 1}
    assert fate["per_class"]["fox"]["relabelled_as"] == {"dog": 1}
    assert fate["total"]["objects"] == 5 and fate["total"]["relabelled"] == 2
    assert fate["total"]["relabelled_as"] == {"cat": 1, "dog": 1}

    assert "Object fate of forgotten classes (score >= 0.50, IoU >= 0.50)" in caplog.text
    assert "| dog" in caplog.text and "cat 1" in caplog.text
    # COCO AP is unchanged by the fate bookkeeping: perfect cat and bird detections.
    assert forget["AP_r"] == pytest.approx(100.0)


def test_threshold_is_configurable_through_the_config(dataset, tmp_path):
    from detectron2.config import get_cfg

    from det_forget.config import add_forget_config

    cfg = add_forget_config(get_cfg())
    cfg.FORGET.CLASSES = ["dog"]
    cfg.FORGET.FATE_SCORE_THRESH = 0.2
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = ForgetCOCOEvaluator.from_config(cfg, dataset)
    results = _run(evaluator)
    # dog@3 (score 0.3) now counts as detected; fox is kept, so it has no fate.
    assert results["forget"]["fate_objects"] == 3.0
    assert results["forget"]["detected_pct"] == pytest.approx(200 / 3)
    assert results["forget"]["relabelled_pct"] == pytest.approx(100 / 3)
    report = json.loads((tmp_path / "inference" / "forget_report.json").read_text())
    assert report["object_fate"]["score_thresh"] == 0.2
    assert list(report["object_fate"]["per_class"]) == ["dog"]


def test_img_ids_restrict_the_fates(dataset, tmp_path):
    evaluator = ForgetCOCOEvaluator(dataset, GROUPS, output_dir=str(tmp_path))
    results = _run(evaluator, img_ids=[2, 3])
    assert results["forget"]["fate_objects"] == 2.0
    assert results["forget"]["gone_pct"] == pytest.approx(50.0)


def test_no_forget_group_means_no_fate(dataset, tmp_path):
    evaluator = ForgetCOCOEvaluator(dataset, None, output_dir=str(tmp_path))
    results = _run(evaluator)
    assert "forget" not in results or "relabelled_pct" not in results["forget"]
    assert evaluator.last_fates is None
    report = json.loads((tmp_path / "forget_report.json").read_text())
    assert report["object_fate"] is None


def test_forgotten_class_without_objects(dataset, tmp_path):
    groups = ClassGroups(forget=("fox",), retain=("cat", "bird", "dog"))
    evaluator = ForgetCOCOEvaluator(dataset, groups, output_dir=str(tmp_path))
    results = _run(evaluator, [p for p in PREDICTIONS if p[0] != 4])
    assert results["forget"]["fate_objects"] == 2.0
    assert results["forget"]["gone_pct"] == pytest.approx(100.0)
    assert not math.isnan(results["forget"]["detected_pct"])


def test_bad_thresholds(dataset):
    with pytest.raises(ValueError, match="fate_score_thresh"):
        ForgetCOCOEvaluator(dataset, GROUPS, fate_score_thresh=1.5)
    with pytest.raises(ValueError, match="fate_iou_thresh"):
        ForgetCOCOEvaluator(dataset, GROUPS, fate_iou_thresh=0.0)
