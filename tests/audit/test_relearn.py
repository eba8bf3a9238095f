"""Relearn time on the testbed's tiny ViT: the base never lost the class, a model whose
head rows for the class were wiped needs steps to get it back, and the budget holds."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_threads import one_torch_thread

from det_forget.audit.relearn import RelearnResult, relearn_time
from det_forget.classification import evaluate_per_class
from det_forget.evaluation.metrics import group_mean


def _acc_f(model, data, forget) -> float:
    per_class = evaluate_per_class(model, data.images, data.labels, data.num_classes)
    return group_mean(per_class, forget)


def _wiped(model, forget):
    """The model with the forgotten classes' head rows zeroed and their bias far down."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.vit.head.weight[forget] = 0.0
        out.vit.head.bias[forget] = -10.0
    return out


@pytest.fixture(scope="module")
def relearn_setup(membership_testbed):
    t = membership_testbed
    heldout = t["testbed"].heldout
    with one_torch_thread():
        original = _acc_f(t["base"], heldout, t["forget"])
    return t, original


def test_base_model_relearns_at_step_zero(relearn_setup):
    t, original = relearn_setup
    assert original > 40.0
    with one_torch_thread():
        r = relearn_time(
            t["base"],
            t["testbed"].train,
            t["testbed"].heldout,
            t["forget"],
            original_accuracy=original,
        )
    assert r.steps == 0 and r.samples_seen == 0 and r.steps_run == 0
    assert r.start_accuracy == pytest.approx(original) and r.target_accuracy == original / 2
    assert r.describe() == "0 steps (never lost it)" and r.curve == [[0, r.start_accuracy]]


def test_wiped_head_needs_steps_and_gets_the_class_back(relearn_setup):
    t, original = relearn_setup
    wiped = _wiped(t["base"], t["forget"])
    before = {k: v.clone() for k, v in wiped.state_dict().items()}
    with one_torch_thread():
        r = relearn_time(
            wiped,
            t["testbed"].train,
            t["testbed"].heldout,
            t["forget"],
            original_accuracy=original,
            shots=5,
            steps=60,
            lr=1e-2,
            batch_size=8,
        )
        after = _acc_f(wiped, t["testbed"].heldout, t["forget"])
    assert r.start_accuracy == 0.0 and after == 0.0  # the model passed in is untouched
    assert all(torch.equal(v, wiped.state_dict()[k]) for k, v in before.items())
    assert r.within_budget and 0 < r.steps <= 60, r.curve
    assert r.samples_seen == r.steps * 8 and r.steps_run == r.steps
    assert r.final_accuracy >= r.target_accuracy and r.curve[-1] == [r.steps, r.final_accuracy]
    assert all(acc < r.target_accuracy for _, acc in r.curve[:-1])  # the first step that did
    assert r.retain_accuracy is not None and r.shots == r.retain_shots == 5
    assert RelearnResult.from_dict(r.to_dict()) == r


def test_budget_is_respected(relearn_setup):
    t, original = relearn_setup
    with one_torch_thread():
        r = relearn_time(
            _wiped(t["base"], t["forget"]),
            t["testbed"].train,
            t["testbed"].heldout,
            t["forget"],
            original_accuracy=original,
            steps=4,
            lr=1e-6,
            batch_size=8,
            eval_period=3,
        )
    assert r.steps is None and r.samples_seen is None and not r.within_budget
    assert r.steps_run == 4 and [s for s, _ in r.curve] == [0, 3, 4]  # and the last step
    assert r.describe() == "not within 4 steps"


def test_relearn_rejects_bad_arguments(relearn_setup):
    t, original = relearn_setup
    args = (t["base"], t["testbed"].train, t["testbed"].heldout)
    with pytest.raises(ValueError, match="nothing to relearn"):
        relearn_time(*args, t["forget"], original_accuracy=0.0)
    with pytest.raises(ValueError, match="fraction"):
        relearn_time(*args, t["forget"], original_accuracy=original, fraction=1.5)
    with pytest.raises(ValueError, match="steps >= 0"):
        relearn_time(*args, t["forget"], original_accuracy=original, batch_size=0)
    with pytest.raises(ValueError, match="at least one"):
        relearn_time(*args, [], original_accuracy=original)
