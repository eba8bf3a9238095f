"""Object fate on hand-made detections: detected, relabelled (which class), gone."""

import numpy as np
import pytest

from det_forget.evaluation.object_fate import FATES, box_iou, object_fates, summarize_fates

SHIRT, COAT, SNEAKER = 6, 4, 7
GT = [[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]]


def _fates(pred_boxes, pred_classes, pred_scores, gt=GT, gt_cls=(SHIRT, SHIRT, COAT), **kw):
    return object_fates(
        gt, gt_cls, pred_boxes, pred_classes, pred_scores, forget_classes=[SHIRT], **kw
    )


def test_box_iou_known_values():
    iou = box_iou(
        np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    )
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_detected_relabelled_gone():
    fates = _fates(
        pred_boxes=[[0, 0, 10, 10], [21, 21, 40, 40], [50, 50, 60, 60]],
        pred_classes=[SHIRT, COAT, COAT],
        pred_scores=[0.9, 0.8, 0.95],
    )
    # Only the two shirts get a fate; the coat is not forgotten.
    assert [f.fate for f in fates] == ["detected", "relabelled"]
    assert fates[0].label == SHIRT and fates[0].score == pytest.approx(0.9)
    assert fates[1].label == COAT and fates[1].iou == pytest.approx(19 * 19 / 400)
    gone = _fates(pred_boxes=[[50, 50, 60, 60]], pred_classes=[COAT], pred_scores=[0.9])
    assert [f.fate for f in gone] == ["gone", "gone"]
    assert gone[0].label is None and gone[0].score is None


def test_score_and_iou_thresholds():
    preds = dict(pred_boxes=[[0, 0, 10, 10]], pred_classes=[SHIRT], pred_scores=[0.4])
    assert _fates(**preds)[0].fate == "gone"
    assert _fates(**preds, score_thresh=0.3)[0].fate == "detected"
    shifted = dict(pred_boxes=[[5, 0, 15, 10]], pred_classes=[SHIRT], pred_scores=[0.9])
    assert _fates(**shifted)[0].fate == "gone"  # IoU 1/3
    assert _fates(**shifted, iou_thresh=0.3)[0].fate == "detected"
    with pytest.raises(ValueError, match="score_thresh"):
        _fates(**preds, score_thresh=1.5)


def test_own_class_wins_over_a_higher_scoring_relabel():
    fates = _fates(
        pred_boxes=[[0, 0, 10, 10], [0, 0, 10, 10]],
        pred_classes=[COAT, SHIRT],
        pred_scores=[0.99, 0.6],
    )
    assert fates[0].fate == "detected" and fates[0].label == SHIRT


def test_correct_detection_of_an_occluding_neighbour_is_not_a_relabel():
    # A coat overlapping the shirt (IoU 0.6 with the shirt): the coat detection matches the
    # coat exactly, so the shirt is gone, not relabelled.
    gt = [[0, 0, 10, 10], [0, 0, 10, 6]]
    fates = _fates(
        pred_boxes=[[0, 0, 10, 6]],
        pred_classes=[COAT],
        pred_scores=[0.9],
        gt=gt,
        gt_cls=(SHIRT, COAT),
    )
    assert [f.fate for f in fates] == ["gone"]


def test_summary_counts_shares_and_relabel_targets():
    fates = _fates(
        pred_boxes=[[0, 0, 10, 10], [21, 21, 40, 40]],
        pred_classes=[SHIRT, COAT],
        pred_scores=[0.9, 0.8],
        image_id=1,
    )
    fates += object_fates(
        [[0, 0, 5, 5]], [SNEAKER], [], [], [], forget_classes=[SNEAKER], image_id=2
    )
    names = {SHIRT: "Shirt", COAT: "Coat", SNEAKER: "Sneaker"}
    s = summarize_fates(fates, classes=[SHIRT, SNEAKER, 9], names=names).as_dict()
    assert s["score_thresh"] == 0.5 and s["iou_thresh"] == 0.5
    assert s["per_class"]["Shirt"]["detected"] == 1
    assert s["per_class"]["Shirt"]["relabelled_as"] == {"Coat": 1}
    assert s["per_class"]["Sneaker"]["gone_pct"] == 100.0
    assert s["per_class"]["9"]["objects"] == 0 and s["per_class"]["9"]["gone_pct"] is None
    total = s["total"]
    assert total["objects"] == 3
    assert sum(total[f] for f in FATES) == 3
    assert total["relabelled_pct"] == pytest.approx(100 / 3)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="detection boxes"):
        object_fates(GT, [SHIRT] * 3, [[0, 0, 1, 1]], [SHIRT], [0.5, 0.6], forget_classes=[SHIRT])
