import pytest
import torch

from det_forget.evaluation import (
    ClassGroups,
    accuracy_per_class,
    aggregate_by_group,
    drop,
    forgetting_summary,
    h_mean,
)


def test_accuracy_per_class_by_hand():
    preds = torch.tensor([0, 0, 1, 2, 2])
    labels = torch.tensor([0, 1, 1, 2, 2])
    assert accuracy_per_class(preds, labels, 4) == {0: 100.0, 1: 50.0, 2: 100.0}


def test_drop_and_h_mean_by_hand():
    assert drop(80.0, 5.0) == 75.0
    assert h_mean(75.0, 60.0) == pytest.approx(2 * 75 * 60 / 135)
    assert h_mean(-3.0, 60.0) == 0.0  # nothing forgotten
    assert h_mean(0.0, 0.0) == 0.0


def test_groups_are_disjoint_and_aggregate():
    with pytest.raises(ValueError, match="both 'forget' and 'retain'"):
        ClassGroups(forget=(1,), retain=(1, 2))
    g = ClassGroups(forget=(0,), retain=(1, 2), old=(3,))
    scores = {0: 10.0, 1: 50.0, 2: 70.0, 3: 1.0, 4: float("nan")}
    assert aggregate_by_group(scores, g) == {
        "forget": 10.0,
        "retain": 60.0,
        "old": 1.0,
        "missing": None,
    }


def test_forgetting_summary():
    g = ClassGroups(forget=("cat",), retain=("dog", "car"))
    before = {"cat": 90.0, "dog": 80.0, "car": 60.0}
    after = {"cat": 0.0, "dog": 78.0, "car": 60.0}
    s = forgetting_summary(before, after, g)
    assert s["drop"] == 90.0
    assert s["retain_change"] == pytest.approx(-1.0)
    assert s["h_mean"] == pytest.approx(2 * 90 * 69 / 159)
