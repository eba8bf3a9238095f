"""Tests of the forget/retain COCO evaluator against direct pycocotools computations."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import uuid

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation.testing import flatten_results_dict, print_csv_format
from detectron2.structures import Boxes, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from det_forget.evaluation import ClassGroups, drop, h_mean
from det_forget.evaluation.coco_forget import (
    PROTOCOL,
    ForgetCOCOEvaluator,
    load_before,
    per_category_ap,
)

# Non-contiguous COCO ids on purpose: contiguous ids are cat 0, dog 1, bird 2, fish 3.
CATEGORIES = [
    {"id": 1, "name": "cat"},
    {"id": 3, "name": "dog"},
    {"id": 5, "name": "bird"},
    {"id": 9, "name": "fish"},  # no ground truth
]
NAMES = [c["name"] for c in CATEGORIES]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}
GT = {  # image id -> [(class, xywh)]
    1: [("cat", [5, 5, 20, 20]), ("dog", [35, 35, 20, 20])],
    2: [("cat", [10, 10, 15, 25]), ("bird", [40, 5, 15, 15])],
    3: [("dog", [5, 30, 25, 20]), ("bird", [30, 30, 20, 25])],
    4: [("cat", [20, 20, 30, 30])],
}
GROUPS = ClassGroups(forget=("dog",), retain=("cat", "bird", "fish"))


def _gt_json() -> dict:
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
    return {"images": images, "annotations": anns, "categories": CATEGORIES}


@pytest.fixture(scope="module")
def gt_json(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("coco_forget") / "gt.json"
    path.write_text(json.dumps(_gt_json()))
    return str(path)


@pytest.fixture
def dataset(gt_json):
    name = f"test_coco_forget_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, gt_json, "/nonexistent_images")
    yield name
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)


def _run(evaluator: ForgetCOCOEvaluator, predictions: list[tuple]) -> dict:
    """Feed ``[(image_id, class name, xywh, score)]`` through process() and evaluate()."""
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
    return evaluator.evaluate()


def _pycocotools_ap(gt_json: str, predictions: list[tuple], name: str) -> tuple[float, float]:
    """AP and AP50 (in %) of one category computed directly with pycocotools."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_json)
        dt = gt.loadRes(
            [
                {"image_id": i, "category_id": CAT_ID[c], "bbox": list(b), "score": s}
                for i, c, b, s in predictions
            ]
        )
        ev = COCOeval(gt, dt, "bbox")
        ev.params.catIds = [CAT_ID[name]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100.0 * ev.stats[0], 100.0 * ev.stats[1]


def _perfect(*names: str) -> list[tuple]:
    return [
        (image_id, n, box, 0.9) for image_id, objs in GT.items() for n, box in objs if n in names
    ]


# Perfect cats and birds; every dog detected at the right place but called "fish".
FORGOTTEN = _perfect("cat", "bird") + [(i, "fish", b, 0.8) for i, _, b, _ in _perfect("dog")]

HALF_RIGHT = [
    (1, "cat", [5, 5, 20, 20], 0.9),  # hit
    (2, "cat", [13, 14, 15, 25], 0.8),  # shifted: counts at low IoU thresholds only
    (3, "cat", [0, 0, 10, 10], 0.95),  # false positive, ranked first
    (1, "dog", [35, 35, 20, 20], 0.6),  # hit
    (3, "dog", [8, 32, 25, 20], 0.7),  # shifted
    (2, "bird", [40, 5, 15, 15], 0.9),  # hit; the bird of image 3 is missed
]


def _assert_strict_json(path) -> dict:
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_forgotten_class_ap_and_drop(dataset, gt_json, tmp_path, caplog):
    before = {"cat": 80.0, "dog": 60.0, "bird": 70.0}
    evaluator = ForgetCOCOEvaluator(dataset, GROUPS, before=before, output_dir=str(tmp_path))
    with caplog.at_level(logging.INFO):
        results = _run(evaluator, FORGOTTEN)
    forget = results["forget"]
    assert forget["AP_r"] == pytest.approx(100.0)
    assert forget["AP_f"] == pytest.approx(0.0)
    assert forget["AP_f"] == pytest.approx(_pycocotools_ap(gt_json, FORGOTTEN, "dog")[0])
    assert math.isnan(forget["AP_o"]) and math.isnan(forget["AP_m"])
    assert math.isnan(forget["AP-fish"])  # detections but no ground truth: excluded
    assert forget["drop"] == pytest.approx(60.0) == drop(60.0, 0.0)
    assert forget["h_mean"] == pytest.approx(75.0) == pytest.approx(h_mean(60.0, 100.0))
    assert math.isnan(forget["drop50"])  # 'before' had no AP50
    # detectron2's own results are still there and agree.
    assert results["bbox"]["AP-cat"] == pytest.approx(forget["AP-cat"])

    report = _assert_strict_json(tmp_path / "forget_report.json")
    assert report["protocol"] == PROTOCOL
    assert report["class_groups"] == {
        "forget": ["dog"],
        "retain": ["cat", "bird", "fish"],
        "old": [],
        "missing": [],
    }
    rows = {r["name"]: r for r in report["iou_types"]["bbox"]["per_class"]}
    assert rows["fish"]["AP"] is None and rows["fish"]["group"] == "retain"
    assert rows["dog"] == {
        "id": 1,
        "name": "dog",
        "group": "forget",
        "AP": 0.0,
        "AP50": 0.0,
        "AP_before": 60.0,
        "AP50_before": None,
        "delta_AP": -60.0,
    }
    assert report["iou_types"]["bbox"]["summary"]["AP"]["drop"] == pytest.approx(60.0)
    assert "delta AP" in caplog.text and "| dog" in caplog.text

    flat = flatten_results_dict(results)
    assert all(isinstance(v, float) for v in flat.values())
    print_csv_format(results)


def test_half_right_matches_pycocotools(dataset, gt_json, tmp_path):
    evaluator = ForgetCOCOEvaluator(dataset, GROUPS, output_dir=str(tmp_path))
    forget = _run(evaluator, HALF_RIGHT)["forget"]
    expected = {n: _pycocotools_ap(gt_json, HALF_RIGHT, n) for n in ("cat", "dog", "bird")}
    for name, (ap, ap50) in expected.items():
        assert forget[f"AP-{name}"] == pytest.approx(ap, abs=1e-9)
        assert forget[f"AP50-{name}"] == pytest.approx(ap50, abs=1e-9)
    assert 0.0 < expected["cat"][0] < 100.0 and 0.0 < expected["dog"][0] < 100.0
    assert forget["AP_f"] == pytest.approx(expected["dog"][0])
    assert forget["AP_r"] == pytest.approx((expected["cat"][0] + expected["bird"][0]) / 2)
    assert forget["AP50_r"] == pytest.approx((expected["cat"][1] + expected["bird"][1]) / 2)
    assert math.isnan(forget["drop"])  # no 'before'
    assert evaluator.last_per_class["bbox"]["dog"]["AP"] == pytest.approx(expected["dog"][0])


def test_before_from_report_and_set_groups(dataset, tmp_path):
    first_dir, second_dir = tmp_path / "before", tmp_path / "after"
    evaluator = ForgetCOCOEvaluator(dataset, output_dir=str(first_dir))
    first = _run(evaluator, HALF_RIGHT)
    assert "AP_f" not in first["forget"] and "AP-dog" in first["forget"]  # no groups yet
    report_path = first_dir / "forget_report.json"
    ap_before, ap50_before = load_before(report_path, NAMES)
    assert ap_before["dog"] == pytest.approx(first["forget"]["AP-dog"])
    assert "fish" not in ap_before

    # Groups by contiguous id, 'before' from the previous report (the continual trainer's use).
    evaluator = ForgetCOCOEvaluator(dataset, output_dir=str(second_dir), report_name="t1.json")
    evaluator.set_groups(ClassGroups(forget=(1,), retain=(0, 2), missing=(3,)), report_path)
    assert evaluator.groups == ClassGroups(
        forget=("dog",), retain=("cat", "bird"), missing=("fish",)
    )
    forget = _run(evaluator, FORGOTTEN)["forget"]
    d, d50 = ap_before["dog"], ap50_before["dog"]
    assert forget["drop"] == pytest.approx(d)
    assert forget["h_mean"] == pytest.approx(2 * d * 100 / (d + 100))
    assert forget["drop50"] == pytest.approx(d50)
    assert (second_dir / "t1.json").is_file()
    report = _assert_strict_json(second_dir / "t1.json")
    assert report["before_source"] == str(report_path)

    evaluator.set_groups({"forget": ["cat"], "retain": ["dog", "bird"]})
    forget = _run(evaluator, FORGOTTEN)["forget"]
    assert forget["AP_f"] == pytest.approx(100.0) and forget["AP_r"] == pytest.approx(50.0)
    assert math.isnan(forget["drop"])  # set_groups without 'before' clears it


def test_no_detections_at_all(dataset, tmp_path):
    evaluator = ForgetCOCOEvaluator(dataset, GROUPS, output_dir=str(tmp_path))
    forget = _run(evaluator, [])["forget"]
    assert forget["AP_f"] == 0.0 and forget["AP_r"] == 0.0
    assert math.isnan(forget["AP-fish"])


def test_metadata_loaded_later_agrees(dataset):
    evaluator = ForgetCOCOEvaluator(dataset, GROUPS)  # before the dataset was ever loaded
    DatasetCatalog.get(dataset)  # load_coco_json sets the same metadata: no conflict
    assert evaluator.class_names == NAMES
    assert MetadataCatalog.get(dataset).thing_dataset_id_to_contiguous_id == {
        1: 0,
        3: 1,
        5: 2,
        9: 3,
    }


def test_bad_groups(dataset):
    evaluator = ForgetCOCOEvaluator(dataset)
    with pytest.raises(ValueError, match="did you mean"):
        evaluator.set_groups({"forget": ["dgo"], "retain": ["cat"]})
    with pytest.raises(ValueError, match="both"):
        evaluator.set_groups({"forget": ["dog"], "retain": [1]})
    with pytest.raises(ValueError, match="unknown class groups"):
        evaluator.set_groups({"forgotten": ["dog"]})
    with pytest.raises(TypeError, match="tasks="):
        ForgetCOCOEvaluator(dataset, ("bbox",))
    with pytest.raises(FileNotFoundError):
        evaluator.set_before("/nonexistent/report.json")


def test_from_config(dataset, tmp_path):
    from detectron2.config import get_cfg

    from det_forget.config import add_forget_config

    cfg = add_forget_config(get_cfg())
    cfg.FORGET.CLASSES = ["dog"]
    cfg.FORGET.MISSING_CLASSES = ["bird"]
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = ForgetCOCOEvaluator.from_config(cfg, dataset)
    assert evaluator.groups == ClassGroups(
        forget=("dog",), retain=("cat", "fish"), missing=("bird",)
    )
    _run(evaluator, FORGOTTEN)
    assert (tmp_path / "inference" / "forget_report.json").is_file()


def test_per_category_ap_checks_its_input(gt_json):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_json)
        hit = {"image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 1.0}
        ev = COCOeval(gt, gt.loadRes([hit]), "bbox")
        with pytest.raises(ValueError, match="accumulate"):
            per_category_ap(ev, NAMES)
        ev.evaluate()
        ev.accumulate()
    with pytest.raises(ValueError, match="3 class names for 4"):
        per_category_ap(ev, NAMES[:3])
    out = per_category_ap(ev, NAMES)
    # 1 of 3 cats found at precision 1: COCO's 101-point interpolation gives recall
    # thresholds 0.00..0.33 (34 of 101) precision 1, the rest 0.
    assert out["cat"] == {
        "AP": pytest.approx(100.0 * 34 / 101),
        "AP50": pytest.approx(100.0 * 34 / 101),
    }
    assert out["fish"] == {"AP": None, "AP50": None}
